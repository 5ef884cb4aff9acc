import { defineConfig } from 'vitest/config';
// One system per file; files run one after another (each starts several processes).
export default defineConfig({
  test: { include: ['test/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 60_000, fileParallelism: false },
});
