import { defineConfig } from 'vitest/config';
// One system per file, files one after another: each starts seven processes on a 2-core machine.
export default defineConfig({ test: { include: ['test/**/*.test.ts'], testTimeout: 120_000, hookTimeout: 120_000, fileParallelism: false } });
