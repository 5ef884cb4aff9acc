import { openDatabase, closeDatabase } from '@dubgate/db/open';
import { createRedisConnection, closeRedis, pingWithTimeout } from '@dubgate/queues/connections';
import { createLogger, flushLogs } from '@dubgate/runtime/logger';
import { createMetrics } from '@dubgate/runtime/metrics';
import { createShutdown } from '@dubgate/runtime/shutdown';
import { startHealthServer } from '@dubgate/runtime/health';
import { ConfigError } from '@dubgate/runtime/config';
import { loadRelayConfig } from './config.js';
import { createRelay } from './relay.js';

/** The relay process: events:* from Redis → job_events and snapshots in SQLite → Socket.IO rooms. */
async function main() {
  let config;
  try {
    config = loadRelayConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger({ name: 'relay', level: config.LOG_LEVEL });
  const shutdown = createShutdown({ logger: log, timeoutMs: config.SHUTDOWN_TIMEOUT_MS });
  shutdown.listen();

  // Steps run last registered first: health server, relay (unsubscribe, flush), Redis, SQLite.
  const db = openDatabase(config.DB_PATH);
  shutdown.add('sqlite', () => closeDatabase(db));
  const subscriber = createRedisConnection(config.REDIS_URL, 'subscriber', { logger: log, connectionName: 'dubgate:relay-subscriber' });
  const publisher = createRedisConnection(config.REDIS_URL, 'publisher', { logger: log, connectionName: 'dubgate:relay-emitter' });
  shutdown.add('redis', () => Promise.all([closeRedis(subscriber), closeRedis(publisher)]));
  const metrics = createMetrics({ service: 'relay' });

  const relay = createRelay({
    db,
    redis: { subscriber, publisher },
    metrics,
    log,
    socketIoKey: config.REALTIME_ADAPTER_KEY,
    progressPerSecond: config.RELAY_PROGRESS_PER_SECOND,
    flushIntervalMs: config.RELAY_FLUSH_INTERVAL_MS,
    snapshotIntervalMs: config.RELAY_SNAPSHOT_INTERVAL_MS,
    maxBatch: config.RELAY_MAX_BATCH,
    maxPending: config.RELAY_MAX_PENDING,
  });
  shutdown.add('relay', () => relay.stop());

  const health = await startHealthServer({
    port: config.RELAY_PORT,
    host: config.HOST,
    metrics,
    logger: log,
    checks: {
      // The subscriber connection is in subscribe mode: its status tells; the emitter's connection answers PING.
      redis: async () => subscriber.status === 'ready' && (await pingWithTimeout(publisher, 1_000)),
      sqlite: () => db.prepare('SELECT 1').pluck().get() === 1,
    },
  });
  shutdown.add('health server', () => health.close());

  await relay.start();
  log.info({ port: health.port }, 'relay started');
  flushLogs();
  process.send?.('ready');
}

main().catch((err: unknown) => {
  process.stderr.write(`relay failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
