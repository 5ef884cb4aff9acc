// Graceful shutdown: clients are told, their transports closed (not a server-side disconnect, which
// socket.io-client would not retry), and they reconnect by themselves, through a load balancer, to
// another node, where they authenticate and subscribe again. The built process exits 0 on SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rooms, type SubscriptionAck, type WsNotification } from '@dubgate/contracts/ws';
import {
  JWT_SECRET,
  connected,
  createTestEnv,
  disconnected,
  makeUser,
  nextEvent,
  redisUrl,
  request,
  startBalancer,
  WAIT_MS,
  waitFor,
  type Balancer,
  type TestEnv,
} from './helpers.js';

let env: TestEnv;
let balancer: Balancer | undefined;

beforeEach(() => {
  env = createTestEnv('shutdown');
});
afterEach(async () => {
  await balancer?.close();
  balancer = undefined;
  await env.cleanup();
});

describe('graceful shutdown of a node', () => {
  it('tells clients, closes their transports, and they reconnect to the second node and get events there', async () => {
    const first = await env.startNode();
    const second = await env.startNode();
    // New connections go to the first node while it listens, then to the second.
    balancer = await startBalancer(() => [first.port, second.port]);
    const user = makeUser();
    await env.setOwner('long-job', user.id);

    const socket = env.connect(balancer.url, { auth: { token: user.token }, reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
    // What a client does on every (re)connect: subscribe again.
    const acks: SubscriptionAck[] = [];
    socket.on('connect', () => {
      void request<SubscriptionAck>(socket, 'subscribe', ['long-job']).then((a) => acks.push(a));
    });
    await connected(socket);
    await waitFor(() => acks.length === 1);
    expect(first.server.io.of('/').sockets.size).toBe(1);

    const notified = nextEvent<WsNotification>(socket, 'notification');
    const gone = disconnected(socket);
    const closing = first.server.close({ drainTimeoutMs: 3_000 });
    expect(await notified).toMatchObject({ type: 'server_shutdown', severity: 'info', title: expect.any(String), message: expect.any(String) });
    // A transport close: socket.io-client reconnects by itself (unlike "io server disconnect").
    expect(await gone).toBe('transport close');
    await closing;

    await waitFor(() => socket.connected && acks.length === 2, WAIT_MS, 'reconnected and subscribed again');
    expect(acks[1]).toEqual({ ok: true, results: [{ jobId: 'long-job', accepted: true }] });
    expect(second.server.io.of('/').sockets.size).toBe(1);
    env.emitter.to(rooms.job('long-job')).emit('state_change', { jobId: 'long-job', from: 'DUBBING', to: 'DUBBED', timestamp: new Date().toISOString() });
    expect(await nextEvent(socket, 'state_change')).toMatchObject({ jobId: 'long-job', to: 'DUBBED' });

    // The closed node accepts nothing any more, and closing again is harmless.
    await first.server.close();
    expect(first.server.httpServer.listening).toBe(false);
  });

  it('closes within the drain timeout even when a client does not leave', async () => {
    const node = await env.startNode();
    const socket = env.connect(node.url, { auth: { token: makeUser().token } });
    await connected(socket);
    // Simulate a client that never acknowledges: freeze its transport so the close cannot drain.
    (socket.io.engine as unknown as { transport: { ws?: { _socket?: net.Socket } } }).transport.ws?._socket?.pause();
    const started = Date.now();
    await node.server.close({ drainTimeoutMs: 300 });
    // Without the drain timeout close() would wait for this client forever: any bound shows it.
    expect(Date.now() - started).toBeLessThan(WAIT_MS);
    expect(node.server.io.of('/').sockets.size).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// The built process

const serverJs = fileURLToPath(new URL('../dist/server.js', import.meta.url));
// Long enough that a loaded machine never reaches it: a graceful exit comes well before.
const SHUTDOWN_TIMEOUT_MS = 20_000;

interface Child {
  child: ChildProcess;
  port: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}
const children: Array<{ c: Child; dir: string }> = [];
afterEach(async () => {
  for (const { c, dir } of children.splice(0)) {
    if (c.child.exitCode === null && c.child.signalCode === null) {
      c.child.kill('SIGKILL');
      await c.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startProcess(extraEnv: Record<string, string> = {}): Promise<Child> {
  expect(existsSync(serverJs), `${serverJs} is missing: build realtime first (tsc -p tsconfig.build.json)`).toBe(true);
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-realtime-'));
  const port = await freePort();
  const child = spawn(process.execPath, [serverJs], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: dir,
      NODE_ENV: 'production',
      REALTIME_PORT: String(port),
      HOST: '127.0.0.1',
      DB_PATH: join(dir, 'data', 'gateway.db'),
      REDIS_URL: redisUrl(),
      JWT_SECRET,
      LOG_LEVEL: 'info',
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      REALTIME_ADAPTER_KEY: env.adapterKey,
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const c: Child = { child, port, exited, output: () => out };
  children.push({ c, dir });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "ready" within 30 s:\n${out}`)), 30_000);
    child.once('message', (m) => {
      clearTimeout(timer);
      if (m === 'ready') resolve();
      else reject(new Error(`unexpected message ${String(m)}`));
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`the process exited at start:\n${out}`));
    });
  });
  return c;
}

describe('the built process', () => {
  it('sends ready, serves sockets and /healthz, and on SIGTERM tells clients and exits 0', async () => {
    const p = await startProcess();
    const url = `http://127.0.0.1:${p.port}`;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const user = makeUser();
    const socket = env.connect(url, { auth: { token: user.token } });
    await connected(socket);
    env.emitter.to(rooms.user(user.id)).emit('notification', { type: 'hello', title: 'Hi', message: 'from the relay', severity: 'info' });
    expect(await nextEvent(socket, 'notification')).toMatchObject({ type: 'hello' });

    const notified = nextEvent<WsNotification>(socket, 'notification');
    const gone = disconnected(socket);
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    expect(await notified).toMatchObject({ type: 'server_shutdown' });
    expect(await gone).toBe('transport close');
    expect(await p.exited).toEqual({ code: 0, signal: null });
    // Graceful, not cut short: before SHUTDOWN_TIMEOUT_MS would have forced the exit.
    expect(Date.now() - t0).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    expect(p.output()).toMatch(/shutdown complete/);
  });

  it('refuses to start with an invalid configuration, reporting every problem (exit 2)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dubgate-realtime-'));
    try {
      const child = spawn(process.execPath, [serverJs], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '', REDIS_URL: 'http://nope', REALTIME_PORT: 'x', JWT_SECRET: 'short', REALTIME_ALLOWED_ORIGINS: 'not an origin' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      expect(code).toBe(2);
      for (const name of ['REDIS_URL', 'REALTIME_PORT', 'JWT_SECRET', 'REALTIME_ALLOWED_ORIGINS']) expect(err).toContain(name);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
