import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { createStageQueues, type StageQueues } from '@dubgate/queues/stage-queues';
import type { ApiConfig } from '../config.js';

declare module 'fastify' {
  interface FastifyInstance {
    stageQueues: StageQueues;
  }
}

export interface StageQueuesOptions {
  config: Pick<ApiConfig, 'queuePrefix' | 'MAX_RETRIES_DOWNLOAD' | 'MAX_RETRIES_DUB' | 'MAX_RETRIES_MUX' | 'STAGE_BACKOFF_MS'>;
}

/** The BullMQ stage queues on the redis plugin's connection (which that plugin closes). */
async function stageQueues(app: FastifyInstance, { config }: StageQueuesOptions): Promise<void> {
  const queues = createStageQueues({
    connection: app.redis,
    prefix: config.queuePrefix,
    retries: { download: config.MAX_RETRIES_DOWNLOAD, dub: config.MAX_RETRIES_DUB, mux: config.MAX_RETRIES_MUX },
    backoffDelayMs: config.STAGE_BACKOFF_MS,
    logger: app.log,
  });
  app.addHook('onClose', async () => {
    // A failing queue close is logged, not thrown: the Redis connection still closes after it.
    await queues.close().catch((err: unknown) => app.log.warn({ err }, 'closing queues failed'));
  });
  app.decorate('stageQueues', queues);
}

export default fp(stageQueues, { name: 'stage-queues', dependencies: ['redis'] });
