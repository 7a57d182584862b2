import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

export default defineConfig({
  plugins: [
    vue({
      // <quota-widget> is a custom element, not a Vue component to resolve.
      template: { compilerOptions: { isCustomElement: (tag) => tag === "quota-widget" } },
    }),
  ],
  // `npm run dev`: the quota API of a quota-server started separately.
  server: { proxy: { "/api": "http://127.0.0.1:8787" } },
});
