import { defineConfig } from 'vitest/config';

// The files start real programs (redis-server, nginx, PM2, every built process) on free ports:
// one file at a time, so two of them never compete for the machine's two cores.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 90_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
