import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real Redis and real child processes: shutdown and cancel cases wait a few seconds at most.
    testTimeout: 30_000,
    hookTimeout: 20_000,
  },
});
