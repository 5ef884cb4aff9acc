import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { createRedisConnection, closeRedis } from '@dubgate/queues/connections';

declare module 'fastify' {
  interface FastifyInstance {
    /** The api's one Redis role: a producer connection that fails fast (queues, keys, publishing). */
    redis: Redis;
  }
}

export interface RedisOptions {
  url: string;
}

async function redis(app: FastifyInstance, opts: RedisOptions): Promise<void> {
  const connection = createRedisConnection(opts.url, 'producer', { logger: app.log });
  app.addHook('onClose', async () => {
    await closeRedis(connection);
  });
  app.decorate('redis', connection);
}

export default fp(redis, { name: 'redis' });
