import { defineConfig } from "vite";

// The build lands where appliance/qb-web's build script asks (QB_WEB_OUT,
// inside Cargo's OUT_DIR); `npm run build` alone writes dist/.
export default defineConfig({
  build: {
    outDir: process.env.QB_WEB_OUT ?? "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    // Everything is served by the binary; no inline data URLs for scripts.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8000",
      "/reports": "http://127.0.0.1:8000",
      "/ws": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
});
