import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real Redis: retries with backoff and fail-fast checks take a few seconds at most.
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
