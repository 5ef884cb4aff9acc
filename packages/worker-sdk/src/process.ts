import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import type { Stage } from '@dubgate/contracts/states';
import { pingWithTimeout } from '@dubgate/queues/connections';
import {
  BASE_FIELDS,
  ConfigError,
  FIELDS,
  integerField,
  loadConfig,
  portField,
  stringField,
  summarizeConfig,
  type ConfigOf,
  type Field,
  type LoadConfigOptions,
} from '@dubgate/runtime/config';
import { startHealthServer, type HealthCheck } from '@dubgate/runtime/health';
import { createLogger, type Logger, flushLogs } from '@dubgate/runtime/logger';
import { createMetrics, type Metrics } from '@dubgate/runtime/metrics';
import { createShutdown } from '@dubgate/runtime/shutdown';
import { createStageWorker, type StageProcessor } from './worker.js';

/** Settings every stage worker process reads, beside REDIS_URL, MEDIA_ROOT, HOST and the base ones. */
export const WORKER_FIELDS = {
  WORKER_CONCURRENCY: integerField('WORKER_CONCURRENCY', { doc: 'stage jobs one worker process runs at once', default: 1, min: 1, max: 256 }),
  QUEUE_PREFIX: stringField('QUEUE_PREFIX', {
    doc: 'BullMQ key prefix; every process of one install must agree (change it only for tests)',
    default: 'q',
    maxLength: 64,
    pattern: /^[A-Za-z0-9_-]+$/,
    patternDoc: 'letters, digits, _ and - only',
  }),
  // How long a worker's lock on a job lasts without renewal, and how often stalled jobs are
  // looked for: a worker that dies (SIGKILL, power loss) has its stage run again after about
  // lock duration + stalled interval.
  WORKER_LOCK_DURATION_MS: integerField('WORKER_LOCK_DURATION_MS', { doc: 'BullMQ lock duration of a running stage job', default: 30_000, min: 1_000, max: 3_600_000 }),
  WORKER_STALLED_INTERVAL_MS: integerField('WORKER_STALLED_INTERVAL_MS', { doc: 'how often BullMQ looks for stalled stage jobs', default: 30_000, min: 500, max: 3_600_000 }),
} as const;

/** WORKER_PORT: the health/metrics port, whose default differs per stage. */
export function workerPortField(defaultPort: number): Field<'WORKER_PORT', number> {
  return portField('WORKER_PORT', { doc: "port of the worker's /healthz and /metrics", default: defaultPort });
}

export function workerConfigFields(defaultPort: number) {
  return [
    ...BASE_FIELDS,
    FIELDS.REDIS_URL,
    FIELDS.MEDIA_ROOT,
    FIELDS.HOST,
    workerPortField(defaultPort),
    WORKER_FIELDS.WORKER_CONCURRENCY,
    WORKER_FIELDS.QUEUE_PREFIX,
    WORKER_FIELDS.WORKER_LOCK_DURATION_MS,
    WORKER_FIELDS.WORKER_STALLED_INTERVAL_MS,
  ] as const;
}

export type WorkerConfig = ConfigOf<ReturnType<typeof workerConfigFields>>;

export interface WorkerInit<F extends readonly Field<string, unknown>[]> {
  config: WorkerConfig & ConfigOf<F>;
  logger: Logger;
  metrics: Metrics;
}

export interface RunStageWorkerProcessOptions<S extends Stage, F extends readonly Field<string, unknown>[] = []> {
  stage: S;
  /** The stage function. Give this or `init`. */
  processor?: StageProcessor<S>;
  /** Builds the stage function from the loaded configuration (for stages with settings of their own). */
  init?: (env: WorkerInit<F>) => StageProcessor<S> | Promise<StageProcessor<S>>;
  /** WORKER_PORT default: 9111 download, 9112 dub, 9113 mux. */
  defaultPort: number;
  /** The stage's own settings, validated together with the common ones. */
  extraFields?: F;
  /** Extra /healthz checks (e.g. a binary the stage needs). */
  healthChecks?: Record<string, HealthCheck>;
  /** Logger and metrics `service` name. Default `worker-<stage>`. */
  name?: string;
  /** For tests: where configuration comes from. */
  configOptions?: LoadConfigOptions;
}

/**
 * Splits SHUTDOWN_TIMEOUT_MS: running jobs get most of it, then the abort grace, then a reserve for
 * handing them back and closing Redis, so the process still exits within the budget.
 */
export function shutdownBudget(totalMs: number): { jobTimeoutMs: number; abortGraceMs: number } {
  const abortGraceMs = Math.min(4_000, Math.floor(totalMs / 4));
  const reserve = Math.min(2_000, Math.floor(totalMs / 4));
  return { jobTimeoutMs: Math.max(0, totalMs - abortGraceMs - reserve), abortGraceMs };
}

/**
 * The whole worker process: configuration (all problems reported at once, exit 2), pino logger,
 * metrics, /healthz (Redis and MEDIA_ROOT) and /metrics on WORKER_PORT, the stage worker, graceful
 * shutdown on SIGTERM/SIGINT within SHUTDOWN_TIMEOUT_MS, and `process.send('ready')` under PM2 or
 * a test harness. Resolves once the worker takes jobs.
 */
export async function runStageWorkerProcess<S extends Stage, F extends readonly Field<string, unknown>[] = []>(
  opts: RunStageWorkerProcessOptions<S, F>,
): Promise<void> {
  const name = opts.name ?? `worker-${opts.stage}`;
  const fields = [...workerConfigFields(opts.defaultPort), ...(opts.extraFields ?? [])] as const;
  let config: WorkerConfig & ConfigOf<F>;
  try {
    config = loadConfig(fields, opts.configOptions) as unknown as WorkerConfig & ConfigOf<F>;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }

  const logger = createLogger({ name, level: config.LOG_LEVEL });
  try {
    const shutdown = createShutdown({ logger, timeoutMs: config.SHUTDOWN_TIMEOUT_MS });
    shutdown.listen();
    logger.info({ config: summarizeConfig(config as unknown as Record<string, unknown>, fields) }, `${name} starting`);

    const metrics = createMetrics({ service: name });
    let processor = opts.processor;
    if (!processor) {
      if (!opts.init) throw new TypeError('runStageWorkerProcess needs a processor or an init function');
      processor = await opts.init({ config, logger, metrics });
    }
    await mkdir(config.MEDIA_ROOT, { recursive: true });

    const { jobTimeoutMs, abortGraceMs } = shutdownBudget(config.SHUTDOWN_TIMEOUT_MS);
    const worker = createStageWorker({
      stage: opts.stage,
      redisUrl: config.REDIS_URL,
      queuePrefix: config.QUEUE_PREFIX,
      mediaRoot: config.MEDIA_ROOT,
      concurrency: config.WORKER_CONCURRENCY,
      processor,
      logger,
      metrics,
      shutdownTimeoutMs: jobTimeoutMs,
      abortGraceMs,
      lockDurationMs: config.WORKER_LOCK_DURATION_MS,
      stalledIntervalMs: config.WORKER_STALLED_INTERVAL_MS,
    });

    const health = await startHealthServer({
      port: config.WORKER_PORT,
      host: config.HOST,
      metrics,
      logger,
      checks: {
        redis: () => pingWithTimeout(worker.connection, 1_000),
        filesystem: () => access(config.MEDIA_ROOT, constants.W_OK),
        ...opts.healthChecks,
      },
    });
    // Steps run last-registered first: the worker drains while /healthz still answers.
    shutdown.add('health server', () => health.close());
    shutdown.add('stage worker', () => worker.close());

    await worker.start();
    logger.info({ port: health.port, stage: opts.stage }, `${name} ready`);
    flushLogs();
    process.send?.('ready');
  } catch (err) {
    logger.fatal({ err }, `${name} failed to start`);
    process.exit(1);
  }
}
