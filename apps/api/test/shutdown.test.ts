// Graceful shutdown of the built process (invariant 5): SIGTERM while a request is in flight lets
// it finish, closes idle keep-alive connections, refuses new connections, and exits 0 within
// SHUTDOWN_TIMEOUT_MS. (Only login and read requests are sent: the built server uses the
// production queue prefix, and this test must not leave jobs in a shared Redis.)
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ADMIN_PASSWORD, ADMIN_USERNAME, JWT_SECRET, canConnect, freePort, redisUrl, waitFor } from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 120_000 });

const serverJs = fileURLToPath(new URL('../dist/server.js', import.meta.url));
const SHUTDOWN_TIMEOUT_MS = 5_000;
const loginBody = JSON.stringify({ username: ADMIN_USERNAME, password: ADMIN_PASSWORD });

interface Reply {
  status: number;
  body: string;
}

interface Server {
  port: number;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

const started: Array<{ server: Server; dir: string }> = [];

afterEach(async () => {
  for (const { server, dir } of started.splice(0)) {
    if (server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGKILL');
      await server.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

async function startServer(): Promise<Server> {
  expect(existsSync(serverJs), `${serverJs} is missing: build the api first (tsc -p tsconfig.build.json)`).toBe(true);
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-api-shutdown-'));
  const port = await freePort();
  const child = spawn(process.execPath, [serverJs], {
    // Its own cwd, so no .env of the repository is read.
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: dir,
      NODE_ENV: 'production',
      API_PORT: String(port),
      HOST: '127.0.0.1',
      DB_PATH: join(dir, 'data', 'gateway.db'),
      MEDIA_ROOT: join(dir, 'media'),
      REDIS_URL: redisUrl(),
      JWT_SECRET,
      ADMIN_USERNAME,
      ADMIN_PASSWORD,
      // debug: the server logs "incoming request" once it has a request's headers, the point
      // the test waits for before it signals.
      LOG_LEVEL: 'debug',
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  // 'close', not 'exit': it comes once stdout and stderr are read to the end, so the output holds
  // the last lines the process wrote ("shutdown complete").
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  const server = { port, child, exited, output: () => out };
  started.push({ server, dir });
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`the server exited at start:\n${out}`);
    try {
      return (await send(port, { path: '/healthz' })).status === 200;
    } catch {
      return false;
    }
  }, 30_000, 50);
  return server;
}

function send(port: number, opts: { method?: string; path: string; body?: string; agent?: http.Agent | false }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path,
        agent: opts.agent ?? false,
        headers: opts.body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(opts.body) },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('graceful shutdown of dist/server.js', () => {
  it.each([
    ['a Connection: close request', false],
    ['a keep-alive request (a browser or a proxy pool)', true],
  ] as const)('SIGTERM during %s: it completes, new connections are refused, exit 0 in time', async (_name, keepAliveInFlight) => {
    const server = await startServer();
    const { port, child } = server;

    // Ordinary traffic first, leaving a keep-alive connection idle during shutdown.
    const idle = new http.Agent({ keepAlive: true, maxSockets: 1 });
    expect((await send(port, { method: 'POST', path: '/api/auth/login', body: loginBody, agent: idle })).status).toBe(200);
    expect((await send(port, { path: '/healthz', agent: idle })).status).toBe(200);
    expect((await send(port, { path: '/metrics' })).status).toBe(200);

    // The in-flight request: headers and part of the body now, SIGTERM, the rest later.
    const inFlightAgent = keepAliveInFlight ? new http.Agent({ keepAlive: true }) : false;
    const loginsSeen = () =>
      server
        .output()
        .split('\n')
        .filter((l) => l.includes('"msg":"incoming request"') && l.includes('"url":"/api/auth/login"')).length;
    // The server writes its log in batches (about every 100 ms): wait for the first login's line.
    await waitFor(() => loginsSeen() === 1, 30_000, 20);
    let signalledAt = 0;
    let connectDuringShutdown: boolean | undefined;
    const reply = await new Promise<Reply>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/api/auth/login',
          agent: inFlightAgent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(loginBody) },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.write(loginBody.slice(0, 10));
      void (async () => {
        // Signal only once the server has the request (it logged its headers): it is in flight.
        await waitFor(() => loginsSeen() === 2, 30_000, 20);
        child.kill('SIGTERM');
        signalledAt = Date.now();
        // While the request is still open, the listener closes: wait until a connection is
        // refused (how soon depends on when the process gets the CPU), then finish the body.
        await waitFor(async () => {
          connectDuringShutdown = await canConnect(port);
          return !connectDuringShutdown;
        }, 30_000, 50);
        req.end(loginBody.slice(10));
      })().catch(reject);
    });

    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toMatchObject({ token: expect.any(String) });
    expect(connectDuringShutdown).toBe(false);

    const { code, signal } = await server.exited;
    const took = Date.now() - signalledAt;
    idle.destroy();
    if (inFlightAgent) inFlightAgent.destroy();
    expect({ code, signal }, server.output()).toEqual({ code: 0, signal: null });
    expect(took).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    expect(server.output()).toContain('shutdown complete');
    expect(await canConnect(port)).toBe(false);
  });
});
