/**
 * nginx with the project's configuration (deploy/nginx.conf.template rendered for free ports) in
 * front of the BUILT api (two instances), two BUILT realtime nodes and the relay, on a private
 * redis-server: the REST flow, Socket.IO over WebSocket and long-polling with one client on each
 * node, the two login limits, forwarded client addresses and request ids, the body limit.
 * Clients bind distinct loopback addresses (127.0.0.x) so nginx sees distinct clients.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  baseEnv,
  cleanupAll,
  commandExists,
  freePortRange,
  http,
  isBuilt,
  login,
  metricValue,
  onCleanup,
  startApp,
  startNginx,
  startRedis,
  tempDir,
  waitFor,
  type HttpAnswer,
  type Nginx,
  type Proc,
} from './helpers.js';

const missing = ['nginx', 'redis-server'].filter((c) => !commandExists(c));
const unbuilt = (['api', 'realtime', 'relay'] as const).filter((a) => !isBuilt(a));
if (missing.length) console.warn(`SKIPPED nginx tests: ${missing.join(', ')} not installed (apt-get install nginx redis-server)`);
if (unbuilt.length) console.warn(`SKIPPED nginx tests: not built: ${unbuilt.join(', ')} (run the build first)`);

const ADMIN_PASSWORD = 'deploy-test-admin-password';

// Per test: above the sum of its waits (deadlines, reached only when something is wrong).
describe.skipIf(missing.length > 0 || unbuilt.length > 0)('nginx in front of the api and two realtime nodes', { timeout: 240_000 }, () => {
  let nginx: Nginx;
  let base: string;
  let apis: Proc[] = [];
  let realtimePorts: number[] = [];
  let publisher: Redis;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    const dir = tempDir('nginx');
    const redis = await startRedis(dir);
    onCleanup(() => redis.stop());
    const apiBase = await freePortRange(2);
    const rtBase = await freePortRange(2);
    const [relayPort] = [await freePortRange(1)];
    realtimePorts = [rtBase, rtBase + 1];
    const env = baseEnv({
      REDIS_URL: redis.url,
      DB_PATH: join(dir, 'gateway.db'),
      MEDIA_ROOT: join(dir, 'media'),
      JWT_SECRET: randomBytes(32).toString('hex'),
      ADMIN_PASSWORD,
      SHUTDOWN_TIMEOUT_MS: '5000',
      TEST_CWD: dir,
    });
    // The api as PM2 runs it behind nginx: TRUST_PROXY=127.0.0.1. One login per client address
    // per minute per instance makes its own limiter visible through two instances.
    const apiEnv = { ...env, TRUST_PROXY: '127.0.0.1', LOGIN_MAX_PER_CLIENT: '1', LOGIN_MAX_PER_USERNAME: '1000' };
    apis.push(await startApp('api', { ...apiEnv, API_PORT: String(apiBase) }, 'api-0'));
    const rest = await Promise.all([
      startApp('api', { ...apiEnv, API_PORT: String(apiBase + 1) }, 'api-1'),
      startApp('realtime', { ...env, REALTIME_PORT: String(rtBase) }, 'realtime-0'),
      startApp('realtime', { ...env, REALTIME_PORT: String(rtBase + 1) }, 'realtime-1'),
      startApp('relay', { ...env, RELAY_PORT: String(relayPort) }, 'relay'),
    ]);
    apis.push(rest[0]);

    const www = join(dir, 'www');
    mkdirSync(www, { recursive: true });
    writeFileSync(join(www, 'index.html'), '<!doctype html><title>dubgate</title><p>dubgate web</p>\n');
    nginx = await startNginx({ dir: join(dir, 'nginx'), api: [apiBase, apiBase + 1], realtime: realtimePorts, staticRoot: www });
    onCleanup(() => nginx.stop());
    base = `http://127.0.0.1:${nginx.port}`;
    publisher = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await publisher.connect();
    onCleanup(() => publisher.quit().catch(() => publisher.disconnect()));
    onCleanup(() => {
      for (const s of sockets) s.disconnect();
    });
  }, 240_000); // starting every process on a loaded machine: a deadline, not an expectation

  afterAll(async () => {
    await cleanupAll();
  });

  it('serves the REST flow through nginx, spread over both api instances', async () => {
    const from = '127.0.0.2';
    const health = await http(`${base}/healthz`, { localAddress: from });
    expect(health.status).toBe(200);
    expect(health.json().dependencies).toMatchObject({ redis: 'up', sqlite: 'up' });

    const token = await login(base, 'admin', ADMIN_PASSWORD, from);
    const auth = { authorization: `Bearer ${token}` };
    const created = await http(`${base}/api/jobs`, {
      localAddress: from,
      headers: auth,
      body: { url: 'https://videos.example.com/watch?v=nginx', requestedDubbing: true, targetLang: 'es' },
    });
    expect(created.status, created.body).toBe(201);
    const id = created.json().job.id as string;

    const list = await http(`${base}/api/jobs?limit=20`, { localAddress: from, headers: auth });
    expect(list.status).toBe(200);
    expect(list.json().items.map((j: { id: string }) => j.id)).toContain(id);

    const got = await http(`${base}/api/jobs/${id}`, { localAddress: from, headers: auth });
    expect(got.status).toBe(200);
    expect(got.json().job).toMatchObject({ id, url: 'https://videos.example.com/watch?v=nginx' });

    for (let i = 0; i < 6; i++) expect((await http(`${base}/api/jobs/${id}`, { localAddress: from, headers: auth })).status).toBe(200);
    // Both instances answered some of these (round robin across the upstream). Log lines reach
    // stdout within the logger's 100 ms flush.
    for (const api of apis) {
      await expect.poll(() => api.logs().some((l) => l.msg === 'request completed'), { message: `${api.name} got no request`, timeout: 30_000 }).toBe(true);
    }
  });

  it('passes X-Request-Id through (or makes one) and the api answers with it', async () => {
    const mine = await http(`${base}/api/jobs`, { localAddress: '127.0.0.2', headers: { 'x-request-id': 'deploy-test-rid-1' } });
    expect(mine.status).toBe(401);
    expect(mine.headers['x-request-id']).toBe('deploy-test-rid-1');
    expect(mine.json().error.requestId).toBe('deploy-test-rid-1');

    const made = await http(`${base}/api/jobs`, { localAddress: '127.0.0.2' });
    expect(made.status).toBe(401);
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f]{32}$/);
    expect(made.json().error.requestId).toBe(made.headers['x-request-id']);
  });

  it('gives the api the real client address (X-Forwarded-For from nginx, TRUST_PROXY=127.0.0.1)', async () => {
    const attempt = (from: string, requestId: string, extra: Record<string, string> = {}) =>
      http(`${base}/api/auth/login`, {
        localAddress: from,
        headers: { 'x-request-id': requestId, ...extra },
        body: { username: `nobody-${randomBytes(4).toString('hex')}`, password: 'wrong-password' },
      });
    // One attempt per address per instance: three from one address meet the api's own limit on
    // one of the two instances.
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await attempt('127.0.0.60', `xff-a-${i}`)).status);
    expect(statuses).toContain(429);
    expect(statuses[0]).toBe(401);
    // Another address is another client to the api: not limited.
    expect((await attempt('127.0.0.61', 'xff-b-0')).status).toBe(401);
    // A client cannot pose as someone else: the api believes only the hop nginx added.
    await attempt('127.0.0.62', 'xff-spoof', { 'x-forwarded-for': '203.0.113.9' });

    const seen = (reqId: string) =>
      apis.flatMap((a) => a.logs()).find((l) => l.reqId === reqId && l.msg === 'request completed') as
        | { req: { remoteAddress: string } }
        | undefined;
    // The three went to either instance; each flushes its own log: wait for all three lines.
    await expect.poll(() => ['xff-a-0', 'xff-b-0', 'xff-spoof'].filter((id) => !seen(id)), { timeout: 30_000 }).toEqual([]);
    expect(seen('xff-a-0')?.req.remoteAddress).toBe('127.0.0.60');
    expect(seen('xff-b-0')?.req.remoteAddress).toBe('127.0.0.61');
    expect(seen('xff-spoof')?.req.remoteAddress).toBe('127.0.0.62');
  });

  it('answers 429 itself once a client passes 5 logins a minute plus a burst of 5', async () => {
    const answers: HttpAnswer[] = [];
    for (let i = 0; i < 8; i++) {
      answers.push(
        await http(`${base}/api/auth/login`, {
          localAddress: '127.0.0.70',
          body: { username: `nobody-${randomBytes(4).toString('hex')}`, password: 'wrong-password' },
        }),
      );
    }
    const fromNginx = (a: (typeof answers)[number]) => a.status === 429 && a.body.includes('from this address');
    // 1 + burst 5 reach the api; the rest are refused by nginx with the api's error shape.
    expect(answers.slice(0, 6).some(fromNginx)).toBe(false);
    expect(answers.slice(6).every(fromNginx)).toBe(true);
    const refused = answers[6]!;
    expect(refused.headers['retry-after']).toBe('60');
    expect(refused.headers['content-type']).toContain('application/json');
    expect(refused.json().error.code).toBe('RATE_LIMITED');
    // Other routes are not limited.
    expect((await http(`${base}/healthz`, { localAddress: '127.0.0.70' })).status).toBe(200);
  });

  it('refuses bodies over 64k with 413, hides /metrics, serves the web UI', async () => {
    const big = await http(`${base}/api/jobs`, {
      localAddress: '127.0.0.2',
      body: { url: `https://videos.example.com/${'a'.repeat(70 * 1024)}` },
    });
    expect(big.status).toBe(413);
    expect((await http(`${base}/metrics`)).status).toBe(404);
    const index = await http(`${base}/`);
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toContain('text/html');
    expect(index.body).toContain('dubgate web');
    // The app's own routes get index.html too.
    expect((await http(`${base}/jobs/some-id`)).body).toContain('dubgate web');
  });

  it('carries Socket.IO over WebSocket and long-polling; a client on each node gets the events', async () => {
    const from = '127.0.0.3';
    const token = await login(base, 'admin', ADMIN_PASSWORD, from);
    const created = await http(`${base}/api/jobs`, {
      localAddress: from,
      headers: { authorization: `Bearer ${token}` },
      body: { url: 'https://videos.example.com/watch?v=socket' },
    });
    expect(created.status).toBe(201);
    const jobId = created.json().job.id as string;

    const connected = async () =>
      Promise.all(
        realtimePorts.map(async (p) => metricValue((await http(`http://127.0.0.1:${p}/metrics`)).body, 'dubgate_realtime_connected_sockets') ?? 0),
      );
    const connect = async (transport: 'websocket' | 'polling', localAddress: string, withAuth: boolean) => {
      const socket = io(base, {
        transports: [transport],
        reconnection: false,
        forceNew: true,
        timeout: 30_000,
        // Same origin as a browser page served by this nginx: the node checks Origin against Host.
        extraHeaders: { origin: base },
        // Long-polling (xmlhttprequest-ssl) and WebSocket (ws) both connect through this agent.
        agent: new Agent({ localAddress }),
        ...(withAuth ? { auth: { token } } : {}),
      } as unknown as Parameters<typeof io>[1]);
      sockets.push(socket);
      await new Promise<void>((resolveConnect, reject) => {
        socket.once('connect', () => resolveConnect());
        socket.once('connect_error', (err) => reject(err));
      });
      return socket;
    };

    // WebSocket, authenticated in the handshake; find the node nginx chose for it.
    const before = await connected();
    const ws = await connect('websocket', '127.0.0.10', true);
    const wsCounts = await waitFor('the websocket client to be counted', async () => {
      const c = await connected();
      return c[0]! + c[1]! === before[0]! + before[1]! + 1 ? c : null;
    });
    const wsNode = wsCounts[0]! > before[0]! ? 0 : 1;

    // Long-polling from other addresses until the hash puts one on the other node.
    let polling: Socket | undefined;
    const same = (a: number[], b: number[]) => a[0] === b[0] && a[1] === b[1];
    for (let i = 11; i < 60 && !polling; i++) {
      const s = await connect('polling', `127.0.0.${i}`, false);
      const c1 = await waitFor('the polling client to be counted', async () => {
        const c = await connected();
        return c[0]! + c[1]! === wsCounts[0]! + wsCounts[1]! + 1 ? c : null;
      });
      const node = c1[0]! > wsCounts[0]! ? 0 : 1;
      if (node !== wsNode) {
        polling = s;
      } else {
        s.disconnect();
        await waitFor('the node to let the client go', async () => same(await connected(), wsCounts));
      }
    }
    expect(polling, 'no client address hashed to the second realtime node').toBeDefined();
    // The polling client authenticates with the event instead of the handshake.
    const authAck = await polling!.timeout(5_000).emitWithAck('authenticate', token);
    expect(authAck).toMatchObject({ ok: true });

    const received = [ws, polling!].map(
      (s) =>
        new Promise<Record<string, unknown>>((resolveEvent) => {
          s.on('progress', (e: Record<string, unknown>) => {
            if (e.jobId === jobId && e.percent === 42) resolveEvent(e);
          });
        }),
    );
    for (const s of [ws, polling!]) {
      // The job's owner key reaches Redis right after the insert; retry until it is there.
      await waitFor('the subscription to be accepted', async () => {
        const ack = await s.timeout(5_000).emitWithAck('subscribe', [jobId]);
        return ack.ok && ack.results[0]?.accepted;
      });
    }

    // A worker's progress message on Redis Pub/Sub: relay → emitter → adapter → both nodes.
    const message = JSON.stringify({
      jobId,
      type: 'progress',
      timestamp: new Date().toISOString(),
      payload: { stage: 'download', percent: 42, step: 'deploy test' },
    });
    const events = await waitFor(
      'both clients to get the progress event',
      async () => {
        await publisher.publish('events:progress', message);
        return Promise.race([Promise.all(received), new Promise<null>((r) => setTimeout(() => r(null), 500))]);
      },
      60_000,
      0,
    );
    for (const e of events) expect(e).toMatchObject({ jobId, type: 'download', percent: 42 });
    expect(ws.io.engine.transport.name).toBe('websocket');
    expect(polling!.io.engine.transport.name).toBe('polling');
  });
});
