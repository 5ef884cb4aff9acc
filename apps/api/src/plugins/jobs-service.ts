import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { groupCommittedOutbox } from '@dubgate/db/outbox';
import { createEventPublisher } from '@dubgate/queues/publisher';
import { createOutboxDelivery } from '@dubgate/queues/outbox-delivery';
import { gatewayKeys } from '@dubgate/queues/names';
import type { Metrics } from '@dubgate/runtime/metrics';
import type { ApiConfig } from '../config.js';
import { createJobsService, type JobsService } from '../services/jobs-service.js';

declare module 'fastify' {
  interface FastifyInstance {
    jobs: JobsService;
  }
}

export interface JobsServiceOptions {
  config: ApiConfig;
  metrics: Metrics;
  mediaRoot: string;
}

/** Reads the scheduler's download hold at most every 500 ms: it is on the ingest path. */
function createHoldReader(redis: Redis, key: string) {
  let cached: { at: number; value: string | null } | null = null;
  return async (): Promise<string | null> => {
    if (cached && Date.now() - cached.at < 500) return cached.value;
    const raw = await redis.get(key);
    let value: string | null = null;
    if (raw) {
      try {
        value = (JSON.parse(raw) as { message?: string }).message ?? 'downloads are held';
      } catch {
        value = 'downloads are held';
      }
    }
    cached = { at: Date.now(), value };
    return value;
  };
}

/**
 * Wires the jobs service on the sqlite, redis and stage-queues plugins. It opens nothing of its
 * own (publisher and delivery use the redis plugin's connection), so it has no onClose.
 */
async function jobsService(app: FastifyInstance, { config, metrics, mediaRoot }: JobsServiceOptions): Promise<void> {
  const { redis, repos, stageQueues, groupCommit } = app;
  const keys = gatewayKeys(config.gatewayKeyPrefix);
  const delivery = createOutboxDelivery({
    store: groupCommittedOutbox(repos.outbox, groupCommit),
    stageQueues,
    publisher: createEventPublisher(redis),
    pipeline: () => redis.pipeline(),
    logger: app.log,
    ownership: { redis, ownerKey: keys.jobOwnerKey },
  });
  const jobsCreated = metrics.counter({ name: 'jobs_created_total', help: 'Jobs accepted by the API' });
  app.decorate(
    'jobs',
    createJobsService({
      ...repos,
      stageQueues,
      delivery,
      mediaRoot,
      allowPrivateUrls: config.ALLOW_PRIVATE_URLS,
      log: app.log,
      onJobCreated: () => jobsCreated.inc(),
      downloadsHeld: createHoldReader(redis, keys.downloadsHeldKey),
      groupCommit,
      maxPendingCreates: config.API_MAX_PENDING_CREATES,
      failpoint: config.DUBGATE_FAILPOINT,
    }),
  );
}

export default fp(jobsService, { name: 'jobs-service', dependencies: ['sqlite', 'redis', 'stage-queues'] });
