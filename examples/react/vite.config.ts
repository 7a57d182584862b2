import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  // `npm run dev`: the quota API of a quota-server started separately.
  server: { proxy: { "/api": "http://127.0.0.1:8787" } },
});
