import { afterAll, beforeAll } from 'vitest';
import { startRedisServer, type RedisServer } from './redis-server.js';

/**
 * Gives the calling test file a redis-server of its own, as REDIS_URL, for all its tests. Keys
 * are prefixed per test, but Pub/Sub channels (`events:*`, `control:cancel`) are global to a
 * Redis: a file that counts every message on one must not share Redis with the suites of other
 * packages running at the same time. vitest runs each file in a worker of its own, so REDIS_URL
 * changes for this file only.
 */
export function usePrivateRedis(): void {
  let server: RedisServer | undefined;
  let previous: string | undefined;
  beforeAll(async () => {
    server = await startRedisServer();
    previous = process.env.REDIS_URL;
    process.env.REDIS_URL = server.url;
  });
  afterAll(async () => {
    if (previous === undefined) delete process.env.REDIS_URL;
    else process.env.REDIS_URL = previous;
    await server?.stop();
  });
}
