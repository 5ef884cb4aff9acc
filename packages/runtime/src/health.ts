/**
 * Health checks and a bare node:http server for processes without Fastify (scheduler,
 * relay, workers): GET /healthz in the seed's shape and GET /metrics for Prometheus.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { NotFoundError, toErrorBody } from './errors.js';
import type { LoggerLike } from './logger.js';

export type DependencyStatus = 'up' | 'down';

/** A check passes unless it throws, rejects, returns `false`, or takes longer than allowed. */
export type HealthCheck = () => unknown;

/** Runs one check; a check that hangs counts as down after `ms`. Never throws. */
export function checkWithTimeout(
  name: string,
  fn: HealthCheck,
  ms: number,
  logger?: Pick<LoggerLike, 'warn'>,
): Promise<DependencyStatus> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      logger?.warn({ check: name, timeoutMs: ms }, `health check ${name} timed out`);
      resolve('down');
    }, ms);
    Promise.resolve()
      .then(fn)
      .then(
        (result) => {
          clearTimeout(timer);
          if (result === false) logger?.warn({ check: name }, `health check ${name} failed`);
          resolve(result === false ? 'down' : 'up');
        },
        (err: unknown) => {
          clearTimeout(timer);
          logger?.warn({ check: name, err }, `health check ${name} failed`);
          resolve('down');
        },
      );
  });
}

export interface HealthReport {
  status: 'ok' | 'degraded';
  /** Seconds since the process started. */
  uptime: number;
  dependencies: Record<string, DependencyStatus>;
  timestamp: string;
}

export interface HealthReportOptions {
  checkTimeoutMs?: number;
  logger?: Pick<LoggerLike, 'warn'>;
  uptime?: () => number;
  now?: () => Date;
}

/** Runs all checks in parallel; shared with the API's Fastify /healthz route. */
export async function buildHealthReport(
  checks: Readonly<Record<string, HealthCheck>>,
  { checkTimeoutMs = 2000, logger, uptime = () => process.uptime(), now = () => new Date() }: HealthReportOptions = {},
): Promise<{ statusCode: 200 | 503; body: HealthReport }> {
  const names = Object.keys(checks);
  const results = await Promise.all(names.map((n) => checkWithTimeout(n, checks[n]!, checkTimeoutMs, logger)));
  const dependencies: Record<string, DependencyStatus> = {};
  names.forEach((n, i) => {
    dependencies[n] = results[i]!;
  });
  const ok = results.every((r) => r === 'up');
  return {
    statusCode: ok ? 200 : 503,
    body: {
      status: ok ? 'ok' : 'degraded',
      uptime: Math.round(uptime() * 1000) / 1000,
      dependencies,
      timestamp: now().toISOString(),
    },
  };
}

export interface HealthServerOptions extends HealthReportOptions {
  port: number;
  host?: string;
  checks: Readonly<Record<string, HealthCheck>>;
  /** Anything with createMetrics()'s render(). Without it /metrics answers 404. */
  metrics?: { render(): Promise<{ contentType: string; body: string }> };
  logger: LoggerLike;
}

export interface HealthServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  readonly server: Server;
  /** Stops listening and drops open connections; safe to call twice. */
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value));
}

export function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const { port, host = '127.0.0.1', checks, metrics, logger } = options;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const isGet = req.method === 'GET' || req.method === 'HEAD';
    if (isGet && path === '/healthz') {
      const { statusCode, body } = await buildHealthReport(checks, options);
      sendJson(res, statusCode, body);
    } else if (isGet && path === '/metrics' && metrics) {
      const { contentType, body } = await metrics.render();
      send(res, 200, contentType, body);
    } else {
      sendJson(res, 404, toErrorBody(new NotFoundError('ROUTE_NOT_FOUND')));
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err, url: req.url }, 'health server request failed');
      if (!res.headersSent) sendJson(res, 500, toErrorBody(err));
      else res.destroy();
    });
  });

  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.removeListener('error', onError);
      server.on('error', (err) => logger.error({ err }, 'health server error'));
      const bound = (server.address() as AddressInfo).port;
      logger.info({ host, port: bound }, 'health server listening');
      let closing: Promise<void> | undefined;
      resolve({
        port: bound,
        server,
        close() {
          closing ??= new Promise<void>((done) => {
            server.close(() => done());
            // Prometheus keeps connections alive; do not let them hold shutdown up.
            server.closeAllConnections();
          });
          return closing;
        },
      });
    });
  });
}
