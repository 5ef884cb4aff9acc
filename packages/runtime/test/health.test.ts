import { afterEach, describe, expect, it } from 'vitest';
import { checkWithTimeout, startHealthServer, type HealthServer } from '../src/health.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';

const logger = createLogger({ name: 'test', level: 'silent' });
const servers: HealthServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('checkWithTimeout', () => {
  it('is up when the check resolves, down when it throws, returns false or hangs', async () => {
    expect(await checkWithTimeout('ok', () => 'PONG', 50)).toBe('up');
    expect(await checkWithTimeout('sync', () => undefined, 50)).toBe('up');
    expect(await checkWithTimeout('false', async () => false, 50)).toBe('down');
    expect(await checkWithTimeout('throws', () => {
      throw new Error('no');
    }, 50)).toBe('down');
    expect(await checkWithTimeout('rejects', () => Promise.reject(new Error('no')), 50)).toBe('down');
    const started = Date.now();
    expect(await checkWithTimeout('hangs', () => new Promise(() => {}), 40)).toBe('down');
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('startHealthServer', () => {
  it('answers /healthz 200, then 503 when a check fails or hangs', async () => {
    let redisUp = true;
    let sqliteHangs = false;
    const server = await startHealthServer({
      port: 0,
      logger,
      checkTimeoutMs: 50,
      checks: {
        redis: () => {
          if (!redisUp) throw new Error('ECONNREFUSED');
        },
        sqlite: () => (sqliteHangs ? new Promise(() => {}) : true),
      },
    });
    servers.push(server);
    expect(server.port).toBeGreaterThan(0);
    const url = `http://127.0.0.1:${server.port}/healthz`;

    let res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({ status: 'ok', uptime: expect.any(Number), dependencies: { redis: 'up', sqlite: 'up' }, timestamp: expect.any(String) });
    expect(new Date(body.timestamp as string).toISOString()).toBe(body.timestamp);

    redisUp = false;
    res = await fetch(url);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'degraded', dependencies: { redis: 'down', sqlite: 'up' } });

    redisUp = true;
    sqliteHangs = true;
    res = await fetch(url);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'degraded', dependencies: { redis: 'up', sqlite: 'down' } });
  });

  it('serves /metrics as Prometheus text and 404 JSON elsewhere', async () => {
    const metrics = createMetrics({ service: 'relay' });
    metrics.counter({ name: 'events_relayed_total', help: 'Events relayed' }).inc(3);
    const server = await startHealthServer({ port: 0, logger, checks: {}, metrics });
    servers.push(server);
    const base = `http://127.0.0.1:${server.port}`;

    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain('dubgate_events_relayed_total{service="relay"} 3');
    expect(text).toContain('# TYPE process_cpu_user_seconds_total counter');

    const missing = await fetch(`${base}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: { code: 'ROUTE_NOT_FOUND', message: 'No such route' } });
    expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(404);
    // no checks: healthy
    expect((await fetch(`${base}/healthz?x=1`)).status).toBe(200);
  });

  it('answers 500 without internals when metrics cannot be rendered', async () => {
    const server = await startHealthServer({
      port: 0,
      logger,
      checks: {},
      metrics: { render: () => Promise.reject(new Error('secret internals')) },
    });
    servers.push(server);
    const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: { code: 'INTERNAL_ERROR', message: 'Internal error' } });
  });

  it('closes twice without error, even with a keep-alive connection open', async () => {
    const server = await startHealthServer({ port: 0, logger, checks: {} });
    await fetch(`http://127.0.0.1:${server.port}/healthz`, { headers: { connection: 'keep-alive' } });
    const a = server.close();
    const b = server.close();
    expect(b).toBe(a);
    await Promise.all([a, b]);
    expect(server.server.listening).toBe(false);
    await expect(fetch(`http://127.0.0.1:${server.port}/healthz`)).rejects.toThrow();
  });

  it('rejects when the port is taken', async () => {
    const first = await startHealthServer({ port: 0, logger, checks: {} });
    servers.push(first);
    await expect(startHealthServer({ port: first.port, logger, checks: {} })).rejects.toThrow(/EADDRINUSE/);
  });
});
