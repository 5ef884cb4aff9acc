import { defineConfig } from 'vite';

// `vite` (pnpm dev) proxies the API and Socket.IO like serve.mjs and nginx do, so the app always
// talks to its own origin. API_URL / REALTIME_URL point at the running processes.
const api = process.env.API_URL ?? 'http://127.0.0.1:3000';
const realtime = process.env.REALTIME_URL ?? 'http://127.0.0.1:3001';

export default defineConfig({
  base: '/',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true, target: 'es2022' },
  server: {
    host: '127.0.0.1',
    port: Number(process.env.PORT ?? 5173),
    proxy: {
      '/api': { target: api, changeOrigin: false },
      '/healthz': { target: api, changeOrigin: false },
      '/socket.io': { target: realtime, ws: true, changeOrigin: false },
    },
  },
});
