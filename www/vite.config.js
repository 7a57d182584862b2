import { defineConfig } from "vite";

// The quota server serves dist/ under a strict CSP (script-src 'self'
// 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'), so the build
// must not inline anything: no data: URLs for assets (the wasm is fetched
// and connect-src does not allow data:), CSS in files, scripts in files.
export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    cssCodeSplit: false,
  },
  server: {
    // `npm run dev`: forward the API to a quota server started separately.
    proxy: { "/api": "http://127.0.0.1:8787" },
    // quota-widget is linked from ../pkg (file: dependency): let the dev
    // server read it, the .wasm included.
    fs: { allow: [".."] },
  },
});
