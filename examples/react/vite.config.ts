import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  // `npm run dev`: the quota API of a quota-server started separately, at
  // QW_API_TARGET (default http://127.0.0.1:8787, where ./scripts/demo
  // listens). The stream needs no setting here: the server opens every
  // event stream with an event, which this proxy waits for before it passes
  // the headers on (tests/e2e/proxies.test.js).
  server: { proxy: { "/api": process.env.QW_API_TARGET ?? "http://127.0.0.1:8787" } },
});
