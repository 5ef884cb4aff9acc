import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real Redis, a local HTTP server and ffmpeg/ffprobe: a case takes a few seconds at most.
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
