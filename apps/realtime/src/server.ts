import { loadRealtimeConfig } from './config.js';
import { createRealtimeServer } from './app.js';
import { createLogger, flushLogs } from '@dubgate/runtime/logger';
import { createShutdown } from '@dubgate/runtime/shutdown';
import { ConfigError, summarizeConfig } from '@dubgate/runtime/config';

/** The realtime process: configuration, logger, signals, listen. Everything else is in app.ts. */
async function main() {
  let config;
  try {
    config = loadRealtimeConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ name: 'realtime', level: config.LOG_LEVEL });
  const shutdown = createShutdown({ logger, timeoutMs: config.SHUTDOWN_TIMEOUT_MS });
  shutdown.listen();

  const realtime = await createRealtimeServer({ config, logger });
  // Draining clients must leave time for closing Redis within SHUTDOWN_TIMEOUT_MS.
  const drainTimeoutMs = Math.min(config.REALTIME_DRAIN_TIMEOUT_MS, Math.floor(config.SHUTDOWN_TIMEOUT_MS / 2));
  shutdown.add('socket.io, adapter and redis', () => realtime.close({ drainTimeoutMs }));

  await new Promise<void>((resolve, reject) => {
    realtime.httpServer.once('error', reject);
    realtime.httpServer.listen(config.REALTIME_PORT, config.HOST, () => {
      realtime.httpServer.off('error', reject);
      resolve();
    });
  });
  realtime.httpServer.on('error', (err) => logger.error({ err }, 'http server error'));
  const address = realtime.httpServer.address();
  const port = typeof address === 'object' && address ? address.port : config.REALTIME_PORT;
  logger.info({ host: config.HOST, port, config: summarizeConfig(config) }, 'realtime listening');
  // PM2 wait_ready: the process is up once it listens.
  flushLogs();
  process.send?.('ready');
}

main().catch((err: unknown) => {
  process.stderr.write(`realtime failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
