import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { statfs, access, constants } from 'node:fs/promises';
import { HealthResponseSchema } from '@dubgate/contracts/api';
import { buildHealthReport, type HealthCheck } from '@dubgate/runtime/health';
import type { Metrics } from '@dubgate/runtime/metrics';
import type { StageQueues } from '@dubgate/queues/stage-queues';

export interface ObservabilityOptions {
  metrics: Metrics;
  checks: { redis: HealthCheck; sqlite: HealthCheck; filesystem: HealthCheck };
  stageQueues: Pick<StageQueues, 'counts'>;
  mediaRoot: string;
  checkTimeoutMs?: number;
}

/** Free bytes under a directory, for metrics and the disk check. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

export async function mediaRootWritable(dir: string): Promise<boolean> {
  await access(dir, constants.W_OK);
  await statfs(dir);
  return true;
}

/**
 * /healthz (seed shape; every check bounded in time) and /metrics (Prometheus text).
 * Request durations are observed per route template and status.
 */
async function observabilityRoutes(app: FastifyInstance, opts: ObservabilityOptions) {
  const { metrics } = opts;
  const checkTimeoutMs = opts.checkTimeoutMs ?? 1_000;

  const requestDuration = metrics.histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route template, method and status',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  });
  metrics.gauge({
    name: 'queue_jobs',
    help: 'BullMQ jobs per stage queue and state',
    labelNames: ['queue', 'state'],
    async collect() {
      try {
        const counts = await withTimeout(opts.stageQueues.counts(), checkTimeoutMs);
        for (const [queue, states] of Object.entries(counts)) {
          for (const [state, n] of Object.entries(states)) this.set({ queue, state }, n);
        }
      } catch {
        // Redis down: keep the last values rather than fail the whole scrape.
      }
    },
  });
  metrics.gauge({
    name: 'media_root_free_bytes',
    help: 'Free bytes on the filesystem holding MEDIA_ROOT',
    async collect() {
      try {
        this.set(await freeBytes(opts.mediaRoot));
      } catch {
        // MEDIA_ROOT missing: /healthz reports it.
      }
    },
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    requestDuration.observe(
      { method: request.method, route, status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  app.get(
    '/healthz',
    {
      config: { public: true },
      logLevel: 'warn',
      schema: { tags: ['health'], summary: 'Health of the api and its dependencies', response: { 200: HealthResponseSchema, 503: HealthResponseSchema } },
    },
    async (_request, reply) => {
      const { statusCode, body } = await buildHealthReport(opts.checks, { checkTimeoutMs, logger: app.log });
      return reply.status(statusCode).send(body);
    },
  );

  app.get('/metrics', { config: { public: true }, logLevel: 'warn', schema: { hide: true } }, async (_request, reply) => {
    const { contentType, body } = await metrics.render();
    return reply.type(contentType).send(body);
  });
}

// Not encapsulated: the onResponse hook must see every route's requests, not just these two.
export default fp(observabilityRoutes, { name: 'observability', dependencies: ['errors'] });

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), ms);
    }),
  ]);
}
