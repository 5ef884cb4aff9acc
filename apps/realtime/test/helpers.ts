/**
 * Test harness for realtime nodes: each test gets its own gateway key prefix and adapter channel
 * prefix on the Redis at REDIS_URL, nodes on port 0, the official socket.io-client, the relay's
 * fan-out publisher (and an @socket.io/redis-emitter on the adapter channels), hand-signed JWTs,
 * and cleanup of all of it (afterEach: `env.cleanup()`).
 */
import { createHmac, randomBytes } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { io as ioClient, type Socket as ClientSocket, type ManagerOptions, type SocketOptions } from 'socket.io-client';
import { Emitter } from '@socket.io/redis-emitter';
import { createFanoutPublisher } from '@dubgate/queues/fanout';
import type { ClientToServerEvents, ServerToClientEvents } from '@dubgate/contracts/ws';
import { createLogger } from '@dubgate/runtime/logger';
import { loadRealtimeConfig, type RealtimeConfig } from '../src/config.js';
import { createRealtimeServer, type RealtimeDependencies, type RealtimeRedis, type RealtimeServer } from '../src/app.js';

export const JWT_SECRET = 'test-jwt-secret-0123456789abcdef0123456789abcdef';
export const rand = (): string => randomBytes(5).toString('hex');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL must point at a disposable Redis for these tests');
  return url;
}

// Deadlines of the waits below are generous on purpose: a wait returns as soon as its condition
// holds, and a loaded 2-core machine (two suites in parallel) can stall an event loop for seconds.
export const WAIT_MS = 10_000;

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS, what = 'condition', stepMs = 15): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

export type Client = ClientSocket<ServerToClientEvents, ClientToServerEvents>;

/** A clock that moves only when told, for the `now`/`clock` dependencies of a node. */
export function manualClock(start = 0): { read: () => number; advance(ms: number): void } {
  let t = start;
  return { read: () => t, advance: (ms) => void (t += ms) };
}

/** Clocks a test may give a node instead of the real ones (rate limits, token expiry). */
export type NodeClocks = Pick<RealtimeDependencies, 'now' | 'clock'>;

// ---------------------------------------------------------------------------------------------
// Tokens

export interface ClaimsInput {
  sub?: string;
  sid?: string;
  role?: string;
  iss?: string;
  aud?: string;
  exp?: number;
  iat?: number;
  [k: string]: unknown;
}

/** Signs a JWT by hand (HMAC), so tests can forge expired, misaddressed or foreign tokens. */
export function signJwt(
  payload: Record<string, unknown>,
  opts: { secret?: string; alg?: 'HS256' | 'HS384' | 'HS512' | 'none'; header?: Record<string, unknown> } = {},
): string {
  const alg = opts.alg ?? 'HS256';
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg, typ: 'JWT', ...opts.header })}.${b64(payload)}`;
  if (alg === 'none') return `${input}.`;
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg];
  return `${input}.${createHmac(hash, opts.secret ?? JWT_SECRET).update(input).digest('base64url')}`;
}

export interface TestUser {
  id: string;
  sid: string;
  role: 'admin' | 'user';
  token: string;
}

/** A session token as the api issues it (iss/aud dubgate, HS256), for a made-up user and session. */
export function makeUser(role: 'admin' | 'user' = 'user', claims: ClaimsInput = {}, secret?: string): TestUser {
  const now = Math.floor(Date.now() / 1000);
  const id = `u_${rand()}`;
  const sid = `s_${rand()}`;
  const payload = { sub: id, sid, role, iss: 'dubgate', aud: 'dubgate', iat: now, exp: now + 3600, ...claims };
  return { id: String(payload.sub), sid: String(payload.sid), role, token: signJwt(payload, secret ? { secret } : {}) };
}

// ---------------------------------------------------------------------------------------------
// Environment: prefixes, Redis, emitter, nodes, clients

export interface TestNode {
  server: RealtimeServer;
  config: RealtimeConfig;
  port: number;
  url: string;
  close(): Promise<void>;
}

export interface RelaySide {
  to(room: string | readonly string[]): { emit<E extends keyof ServerToClientEvents>(event: E, payload: Parameters<ServerToClientEvents[E]>[0]): boolean };
}

export interface TestEnv {
  gatewayKeyPrefix: string;
  adapterKey: string;
  /** A plain Redis client for setup and assertions. */
  redis: Redis;
  /** The relay's side: its fan-out batches for this adapter key, behind the emitter's `to(rooms).emit` shape. */
  emitter: RelaySide;
  /** Another emitter on the adapter's own channels (node-to-node broadcasts use these). */
  adapterEmitter: Emitter<ServerToClientEvents>;
  /** The fan-out channel the nodes of this env read. */
  fanoutChannel: string;
  /** A node on port 0; `redis` connections given are the test's to close. */
  startNode(env?: Record<string, string>, redis?: Partial<RealtimeRedis>, clocks?: NodeClocks): Promise<TestNode>;
  connect(url: string, opts?: Partial<ManagerOptions & SocketOptions>): Client;
  /** What the api writes when a job is created. */
  setOwner(jobId: string, userId: string): Promise<void>;
  cleanup(): Promise<void>;
}

const logger = createLogger({ name: 'realtime-test', level: process.env.TEST_LOG ?? 'silent' });

export function nodeConfig(env: Record<string, string>): RealtimeConfig {
  return loadRealtimeConfig({
    env: {
      REDIS_URL: redisUrl(),
      JWT_SECRET,
      REALTIME_PORT: '0',
      LOG_LEVEL: 'silent',
      // The secret is given; DB_PATH only matters for the secret file fallback.
      DB_PATH: '/nonexistent/realtime-never-opens-this.db',
      ...env,
    },
    envFile: false,
  });
}

export async function listen(server: RealtimeServer, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.httpServer.once('error', reject);
    server.httpServer.listen(port, '127.0.0.1', () => {
      server.httpServer.off('error', reject);
      resolve();
    });
  });
  return (server.httpServer.address() as AddressInfo).port;
}

export function createTestEnv(name = 'rt'): TestEnv {
  const tag = `${name}-${rand()}`;
  const gatewayKeyPrefix = `gwt-${tag}`;
  const adapterKey = `sio-${tag}`;
  const redis = new Redis(redisUrl(), { maxRetriesPerRequest: 1 });
  const emitterRedis = new Redis(redisUrl(), { maxRetriesPerRequest: 1 });
  const adapterEmitter = new Emitter<ServerToClientEvents>(emitterRedis, { key: adapterKey });
  const fanout = createFanoutPublisher(emitterRedis, { key: adapterKey });
  const emitter: RelaySide = {
    to: (room) => ({ emit: (event, payload) => fanout.emit(typeof room === 'string' ? [room] : room, event, payload) }),
  };
  const nodes: TestNode[] = [];
  const clients: Client[] = [];

  return {
    gatewayKeyPrefix,
    adapterKey,
    redis,
    emitter,
    adapterEmitter,
    fanoutChannel: fanout.channel,
    async startNode(env = {}, injected, clocks = {}) {
      const config: RealtimeConfig = { ...nodeConfig({ REALTIME_ADAPTER_KEY: adapterKey, ...env }), gatewayKeyPrefix };
      const server = await createRealtimeServer({ config, logger, ...(injected ? { redis: injected } : {}), ...clocks });
      const port = await listen(server);
      const node: TestNode = { server, config, port, url: `http://127.0.0.1:${port}`, close: () => server.close({ drainTimeoutMs: 1_000 }) };
      nodes.push(node);
      return node;
    },
    connect(url, opts = {}) {
      const socket: Client = ioClient(url, { transports: ['websocket'], reconnection: false, forceNew: true, timeout: WAIT_MS, ...opts });
      clients.push(socket);
      return socket;
    },
    async setOwner(jobId, userId) {
      await redis.set(`${gatewayKeyPrefix}:job-owner:${jobId}`, userId);
    },
    async cleanup() {
      for (const c of clients) c.disconnect();
      // Let the nodes see the goodbyes (a long-polling one travels in a request of its own).
      await waitFor(() => nodes.every((n) => n.server.closing || n.server.io.of('/').sockets.size === 0), 1_000).catch(() => {});
      await Promise.all(nodes.map((n) => n.close()));
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', `${gatewayKeyPrefix}:*`, 'COUNT', 1000);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      emitterRedis.disconnect();
    },
  };
}

/** Resolves once connected; rejects with the connect_error (message and data). */
export function connected(socket: Client): Promise<void> {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onConnect = () => {
      socket.off('connect_error', onError);
      resolve();
    };
    const onError = (err: Error) => {
      socket.off('connect', onConnect);
      reject(err);
    };
    socket.once('connect', onConnect);
    socket.once('connect_error', onError);
  });
}

/** The connect_error a socket gets (fails if it connects instead). */
export async function connectError(socket: Client): Promise<Error & { data?: { code: string; message: string } }> {
  try {
    await connected(socket);
  } catch (err) {
    return err as Error & { data?: { code: string; message: string } };
  }
  throw new Error('expected a connect_error, but the socket connected');
}

/** Resolves with the disconnect reason. */
export function disconnected(socket: Client, timeoutMs = WAIT_MS): Promise<string> {
  if (!socket.connected && !socket.active) return Promise.resolve('already disconnected');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not disconnected within ${timeoutMs} ms`)), timeoutMs);
    socket.once('disconnect', (reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

/** Collects every event a client receives (besides the reserved ones), in order. */
export function record(socket: Client): Array<{ event: string; payload: unknown }> {
  const got: Array<{ event: string; payload: unknown }> = [];
  socket.onAny((event: string, payload: unknown) => got.push({ event, payload }));
  return got;
}

export function nextEvent<T = unknown>(socket: Client, event: string, timeoutMs = WAIT_MS): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.offAny(listener);
      reject(new Error(`no "${event}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (name: string, payload: T) => {
      if (name !== event) return;
      clearTimeout(timer);
      socket.offAny(listener);
      resolve(payload);
    };
    socket.onAny(listener);
  });
}

/** Emits with an acknowledgement, bounded. */
export function request<T = unknown>(socket: Client, event: string, ...args: unknown[]): Promise<T> {
  return (socket.timeout(WAIT_MS) as unknown as { emitWithAck(ev: string, ...a: unknown[]): Promise<T> }).emitWithAck(event, ...args);
}

// ---------------------------------------------------------------------------------------------
// HTTP and metrics

export async function httpGet(url: string): Promise<{ status: number; body: string; contentType: string }> {
  const res = await fetch(url, { headers: { connection: 'close' } });
  return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') ?? '' };
}

/** The value of one series in Prometheus text (0 when absent). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return 0;
}

export async function metricsOf(node: TestNode): Promise<string> {
  return (await node.server.metrics.render()).body;
}

// ---------------------------------------------------------------------------------------------
// A TCP load balancer: each new connection goes to the first backend that accepts it.

export interface Balancer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startBalancer(backends: () => number[]): Promise<Balancer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    client.pause();
    const tryNext = (list: number[]) => {
      const port = list[0];
      if (port === undefined) {
        client.destroy();
        return;
      }
      const upstream = net.connect({ port, host: '127.0.0.1' });
      let up = false;
      upstream.on('error', () => {
        upstream.destroy();
        if (up) client.destroy();
        else tryNext(list.slice(1));
      });
      upstream.once('connect', () => {
        up = true;
        sockets.add(upstream);
        upstream.on('close', () => {
          sockets.delete(upstream);
          client.destroy();
        });
        client.on('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryNext(backends());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
