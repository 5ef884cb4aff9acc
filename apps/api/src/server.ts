import type { FastifyInstance } from 'fastify';
import { loadApiConfig } from './config.js';
import { buildApp } from './app.js';
import { createLogger, flushLogs } from '@dubgate/runtime/logger';
import { createShutdown } from '@dubgate/runtime/shutdown';
import { ConfigError } from '@dubgate/runtime/config';

/** The api process: configuration, logger, signals, listen. Everything else is in app.ts. */
async function main() {
  let config;
  try {
    config = loadApiConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ name: 'api', level: config.LOG_LEVEL });
  const shutdown = createShutdown({ logger, timeoutMs: config.SHUTDOWN_TIMEOUT_MS });
  shutdown.listen();

  const app = await buildApp({ config, logger });
  // Fastify's close stops accepting, lets in-flight requests finish, then closes SQLite and Redis.
  shutdown.add('http server and resources', () => app.close());

  if (app.generatedAdminPassword) {
    process.stderr.write(
      `\n  First start: created admin account "${config.ADMIN_USERNAME}" with password: ${app.generatedAdminPassword}\n` +
        '  It is shown only this once. Set ADMIN_PASSWORD to choose it yourself.\n\n',
    );
  }

  await app.listen({ port: config.API_PORT, host: config.HOST });
  // PM2 wait_ready: the process is up once it listens and its health check passes, so a rolling
  // reload moves on to the next instance only when this one answers /healthz with 200 (its Redis
  // connection is made just after the start). Bounded: with Redis down the api still serves (jobs
  // wait in the outbox), so it reports ready anyway after a few seconds.
  await waitUntilHealthy(app, 5_000);
  flushLogs();
  process.send?.('ready');
}

async function waitUntilHealthy(app: FastifyInstance, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const res = await app.inject({ method: 'GET', url: '/healthz' }).catch(() => null);
    if (res?.statusCode === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  app.log.warn({ timeoutMs }, 'not healthy yet after the start; reporting ready anyway');
}

main().catch((err: unknown) => {
  process.stderr.write(`api failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
