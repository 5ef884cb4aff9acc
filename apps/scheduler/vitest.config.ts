import { defineConfig } from 'vitest/config';
// Timeouts above the sum of a test's waits (test/helpers.ts WAIT_MS each), which return early.
export default defineConfig({
  test: { include: ['test/**/*.test.ts'], testTimeout: 120_000, hookTimeout: 60_000, fileParallelism: false },
});
