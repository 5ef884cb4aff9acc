import { mkdirSync } from 'node:fs';
import { openDatabase, closeDatabase } from '@dubgate/db/open';
import { createRedisConnection, closeRedis, pingWithTimeout } from '@dubgate/queues/connections';
import { createLogger, flushLogs } from '@dubgate/runtime/logger';
import { createMetrics } from '@dubgate/runtime/metrics';
import { createShutdown } from '@dubgate/runtime/shutdown';
import { startHealthServer } from '@dubgate/runtime/health';
import { ConfigError } from '@dubgate/runtime/config';
import { loadSchedulerConfig } from './config.js';
import { createScheduler } from './scheduler.js';

/** The scheduler process: one leader drives the state machine; others stand by. */
async function main() {
  let config;
  try {
    config = loadSchedulerConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger({ name: 'scheduler', level: config.LOG_LEVEL });
  const shutdown = createShutdown({ logger: log, timeoutMs: config.SHUTDOWN_TIMEOUT_MS });
  shutdown.listen();

  mkdirSync(config.MEDIA_ROOT, { recursive: true });
  const db = openDatabase(config.DB_PATH);
  shutdown.add('sqlite', () => closeDatabase(db));
  const commands = createRedisConnection(config.REDIS_URL, 'worker', { logger: log, connectionName: 'dubgate:scheduler' });
  const blocking = createRedisConnection(config.REDIS_URL, 'worker', { logger: log, connectionName: 'dubgate:scheduler-events' });
  shutdown.add('redis', () => Promise.all([closeRedis(commands), closeRedis(blocking)]));
  const metrics = createMetrics({ service: 'scheduler' });

  const scheduler = createScheduler({
    db,
    redis: { commands, blocking },
    metrics,
    mediaRoot: config.MEDIA_ROOT,
    minFreeBytes: config.MIN_FREE_DISK_BYTES,
    maxDownloadDepth: config.MAX_DOWNLOAD_QUEUE_DEPTH,
    retries: { download: config.MAX_RETRIES_DOWNLOAD, dub: config.MAX_RETRIES_DUB, mux: config.MAX_RETRIES_MUX },
    backoffDelayMs: config.STAGE_BACKOFF_MS,
    reconcileIntervalMs: config.RECONCILE_INTERVAL_MS,
    lockTtlMs: config.SCHEDULER_LOCK_TTL_MS,
    log,
  });
  shutdown.add('scheduler', () => scheduler.stop());

  const health = await startHealthServer({
    port: config.SCHEDULER_PORT,
    host: config.HOST,
    metrics,
    logger: log,
    checks: {
      redis: () => pingWithTimeout(commands, 1_000),
      sqlite: () => db.prepare('SELECT 1').pluck().get() === 1,
    },
  });
  shutdown.add('health server', () => health.close());

  scheduler.start();
  log.info({ port: health.port }, 'scheduler started; acting once it holds the lock');
  flushLogs();
  process.send?.('ready');
}

main().catch((err: unknown) => {
  process.stderr.write(`scheduler failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
