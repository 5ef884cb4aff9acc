/**
 * What the deployment tests share: free ports, a private redis-server per test file, the built
 * processes started exactly as PM2 starts them (`node apps/<name>/dist/server.js`, waiting for
 * their 'ready' message), nginx with the project's rendered config, HTTP from a chosen local
 * address (so nginx sees distinct clients on 127.0.0.0/8), and cleanup of everything started.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderNginxConfig } from '../render-nginx.mjs';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const APPS = ['api', 'realtime', 'scheduler', 'relay', 'worker-download', 'worker-dub', 'worker-mux'] as const;
export type AppName = (typeof APPS)[number];

export function serverScript(app: AppName): string {
  return join(ROOT, 'apps', app, 'dist', 'server.js');
}

export function isBuilt(app: AppName): boolean {
  return existsSync(serverScript(app));
}

export function commandExists(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// Deadlines are generous (a wait returns as soon as its condition holds): the machine has two
// cores and other suites run at the same time.
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 60_000, everyMs = 100): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await sleep(everyMs);
  }
}

// -------------------------------------------------------------------------------------------
// Temp dirs and cleanup

const cleanups: Array<() => unknown> = [];

/** Registers a cleanup step, run last-first by `cleanupAll()` (call it in afterAll). */
export function onCleanup(fn: () => unknown): void {
  cleanups.push(fn);
}

export async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`cleanup step failed: ${String(err)}\n`);
    }
  }
}

/** A temp dir that outsiders may traverse (nginx workers run as another user when we are root). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `dubgate-deploy-${prefix}-`));
  chmodSync(dir, 0o755);
  onCleanup(() => {
    if (!process.env.KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

// -------------------------------------------------------------------------------------------
// Ports

function portFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const s = createServer();
    s.once('error', () => resolveFree(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolveFree(true)));
  });
}

const handedOut = new Set<number>();

/**
 * Where ports are drawn from: below the kernel's ephemeral range (ip_local_port_range), so that
 * no outgoing connection and no `listen(0)` of another process running meanwhile (the other
 * suites take their ports that way) can be handed one of ours between the check and the use.
 */
function portPool(): { from: number; to: number } {
  let ephemeralStart = 32_768;
  try {
    ephemeralStart = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || ephemeralStart;
  } catch {
    /* not Linux: the usual default */
  }
  return ephemeralStart > 12_000 ? { from: 10_000, to: ephemeralStart - 1 } : { from: 20_000, to: 50_000 };
}

/** `count` consecutive free ports (PM2 gives instance i the port base + i), never a default one. */
export async function freePortRange(count: number): Promise<number> {
  const pool = portPool();
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = pool.from + Math.floor(Math.random() * (pool.to - pool.from - count));
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (ports.some((p) => handedOut.has(p))) continue;
    let ok = true;
    for (const p of ports) {
      if (!(await portFree(p))) {
        ok = false;
        break;
      }
    }
    if (ok) {
      for (const p of ports) handedOut.add(p);
      return base;
    }
  }
  throw new Error('no free port range found');
}

export const freePort = () => freePortRange(1);

// -------------------------------------------------------------------------------------------
// Child processes

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** stdout and stderr lines so far. */
  readonly lines: string[];
  /** Resolves when the process sent 'ready' (rejects if it exits first). */
  readonly ready: Promise<void>;
  /**
   * Resolves with the exit code and signal once the process has exited AND its stdout and stderr
   * have been read to the end: its last log lines (written just before it exits) are in `lines`.
   */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly running: boolean;
  output(): string;
  /** Parsed JSON log lines. */
  logs(): Array<Record<string, unknown>>;
}

export function startProcess(
  name: string,
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; ipc?: boolean; readyTimeoutMs?: number } = {},
): Proc {
  const child = spawn(command, args, {
    cwd: opts.cwd ?? ROOT,
    env: opts.env ?? process.env,
    stdio: opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let running = true;
  const collect = (stream: NodeJS.ReadableStream | null): Promise<void> => {
    if (!stream) return Promise.resolve();
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      const parts = buf.split('\n');
      buf = parts.pop() ?? '';
      lines.push(...parts);
    });
    return new Promise<void>((resolveEnd) => {
      stream.on('end', () => {
        if (buf) lines.push(buf);
        buf = '';
        resolveEnd();
      });
      stream.on('close', () => resolveEnd());
    });
  };
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const exitedOnly = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.once('exit', (code, signal) => {
      running = false;
      resolveExit({ code, signal });
    });
  });
  // 'exit' can come before the pipes are read to the end. A child of the process that inherited
  // them (nginx's workers) could keep them open after it exits: wait for the end of output only
  // while that is plausible (the pipes end when the last holder exits; the cap is a safety net).
  const exited = exitedOnly.then(async (r) => {
    let cap: NodeJS.Timeout | undefined;
    await Promise.race([drained, new Promise<void>((ok) => (cap = setTimeout(ok, 10_000)))]);
    clearTimeout(cap);
    return r;
  });
  const ready = new Promise<void>((resolveReady, rejectReady) => {
    if (!opts.ipc) {
      resolveReady();
      return;
    }
    // Generous: a cold start of a built process on a loaded 2-core machine takes seconds.
    const readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
    const timer = setTimeout(
      () => rejectReady(new Error(`${name} sent no 'ready' within ${readyTimeoutMs} ms:\n${lines.slice(-20).join('\n')}`)),
      readyTimeoutMs,
    );
    child.on('message', (m) => {
      if (m === 'ready') {
        clearTimeout(timer);
        resolveReady();
      }
    });
    void exitedOnly.then(({ code, signal }) => {
      clearTimeout(timer);
      rejectReady(new Error(`${name} exited (${signal ?? code}) before it was ready:\n${lines.slice(-30).join('\n')}`));
    });
  });
  ready.catch(() => {});
  onCleanup(async () => {
    if (!running) return;
    child.kill('SIGKILL');
    await exitedOnly;
  });
  return {
    name,
    child,
    pid: child.pid!,
    lines,
    ready,
    exited,
    get running() {
      return running;
    },
    output: () => lines.join('\n'),
    logs: () =>
      lines.flatMap((l) => {
        if (!l.startsWith('{')) return [];
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
  };
}

/** A built process, started as PM2 starts it: `node apps/<app>/dist/server.js`, ready on IPC. */
export async function startApp(app: AppName, env: NodeJS.ProcessEnv, name: string = app): Promise<Proc> {
  const proc = startProcess(name, process.execPath, [serverScript(app)], { env, ipc: true, cwd: env.TEST_CWD ?? ROOT });
  await proc.ready;
  return proc;
}

/** Sends SIGTERM and resolves with the exit (its output read to the end) and how long it took to exit. */
export async function terminate(proc: Proc, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const t0 = Date.now();
  let ms = 0;
  proc.child.once('exit', () => (ms = Date.now() - t0));
  proc.child.kill(signal);
  const r = await proc.exited;
  return { ...r, ms };
}

// -------------------------------------------------------------------------------------------
// Redis

export interface RedisServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** A private redis-server on a free port (never 6379), with the production settings. */
export async function startRedis(dir: string): Promise<RedisServer> {
  const port = await freePort();
  mkdirSync(join(dir, 'redis'), { recursive: true });
  const proc = startProcess('redis', 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', join(dir, 'redis'),
    '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction', '--daemonize', 'no',
  ]);
  await waitFor('redis-server', () => spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.includes('PONG'), 60_000, 50);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      if (!proc.running) return;
      proc.child.kill('SIGTERM');
      await proc.exited;
    },
  };
}

// -------------------------------------------------------------------------------------------
// Environment of the processes

/**
 * The environment every process gets in a test: the machine's (PATH and the like) without
 * anything a developer's shell might have set for dubgate, plus the shared settings.
 */
export function baseEnv(shared: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const drop = /^(REDIS_URL|DB_PATH|MEDIA_ROOT|JWT_SECRET|ADMIN_|API_|REALTIME_|SCHEDULER_|RELAY_|WORKER_|PM2_|LOG_|HOST$|TRUST_PROXY|LOGIN_|SHUTDOWN_|NODE_ENV$|QUEUE_PREFIX)/;
  for (const [k, v] of Object.entries(process.env)) if (!drop.test(k)) env[k] = v;
  return { ...env, NODE_ENV: 'production', LOG_LEVEL: 'info', ...shared };
}

// -------------------------------------------------------------------------------------------
// HTTP

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json<T = any>(): T;
}

/** One HTTP request, optionally from a chosen local address (127.0.0.x: a distinct client to nginx). */
export function http(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: unknown; localAddress?: string; timeoutMs?: number } = {},
): Promise<HttpAnswer> {
  const u = new URL(url);
  const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (payload !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
  return new Promise((resolveAnswer, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method: opts.method ?? (payload === undefined ? 'GET' : 'POST'),
        headers,
        agent: false,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          resolveAnswer({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error(`timeout: ${opts.method ?? 'GET'} ${url}`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

export async function login(base: string, username: string, password: string, localAddress?: string): Promise<string> {
  const r = await http(`${base}/api/auth/login`, { body: { username, password }, ...(localAddress ? { localAddress } : {}) });
  if (r.status !== 200) throw new Error(`login failed: ${r.status} ${r.body}`);
  return r.json<{ token: string }>().token;
}

// -------------------------------------------------------------------------------------------
// nginx

export interface Nginx {
  port: number;
  dir: string;
  proc: Proc;
  accessLog(): string;
  stop(): Promise<void>;
}

/** nginx in the foreground with the project's template rendered for these ports, under `dir`. */
export async function startNginx(opts: {
  dir: string;
  api: number[];
  realtime: number[];
  staticRoot?: string;
}): Promise<Nginx> {
  const port = await freePort();
  mkdirSync(join(opts.dir, 'logs'), { recursive: true });
  const conf = renderNginxConfig({
    listen: `127.0.0.1:${port}`,
    api: opts.api.map((p) => `127.0.0.1:${p}`),
    realtime: opts.realtime.map((p) => `127.0.0.1:${p}`),
    root: opts.staticRoot ?? join(opts.dir, 'www'),
    accessLog: join(opts.dir, 'logs', 'access.log'),
    errorLog: join(opts.dir, 'logs', 'error.log'),
    pid: join(opts.dir, 'nginx.pid'),
    tempDir: opts.dir,
  }) as string;
  const confPath = join(opts.dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const check = spawnSync('nginx', ['-t', '-p', opts.dir, '-c', confPath, '-e', join(opts.dir, 'logs', 'error.log')], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx -t failed:\n${check.stderr}`);
  const proc = startProcess('nginx', 'nginx', ['-p', opts.dir, '-c', confPath, '-e', join(opts.dir, 'logs', 'error.log'), '-g', 'daemon off;']);
  await waitFor('nginx to listen', () => portFree(port).then((free) => !free), 60_000, 50);
  return {
    port,
    dir: opts.dir,
    proc,
    accessLog: () => (existsSync(join(opts.dir, 'logs', 'access.log')) ? readFileSync(join(opts.dir, 'logs', 'access.log'), 'utf8') : ''),
    async stop() {
      if (!proc.running) return;
      proc.child.kill('SIGQUIT');
      const t = setTimeout(() => proc.child.kill('SIGKILL'), 5_000);
      await proc.exited;
      clearTimeout(t);
    },
  };
}

// -------------------------------------------------------------------------------------------
// Metrics

/** The value of a Prometheus sample (first match of the name, any labels), or undefined. */
export function metricValue(text: string, name: string): number | undefined {
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, 'm');
  const m = re.exec(text);
  return m ? Number(m[1]) : undefined;
}
