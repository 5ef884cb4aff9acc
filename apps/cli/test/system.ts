/**
 * Test harness: a private redis-server and the BUILT processes (`node apps/<app>/dist/server.js`)
 * in a temp dir, and a runner for the BUILT CLI (`node apps/cli/dist/cli.js`). Test stage
 * workers are plain BullMQ Workers in the test process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { UnrecoverableError, Worker, type Job as BullJob } from 'bullmq';
import { freePort, waitFor as pollUntil } from '@dubgate/test-support/net';
import { startRedisServer } from '@dubgate/test-support/redis-server';

const execFileAsync = promisify(execFile);

export const ROOT = new URL('../../../', import.meta.url).pathname;
export const CLI = join(ROOT, 'apps', 'cli', 'dist', 'cli.js');
export const ADMIN_PASSWORD = 'cli-test-admin-password-0123456789';

export { freePort };

/** The shared poller, with this harness's default timeout. */
export function waitFor<T>(what: string, fn: Parameters<typeof pollUntil<T>>[1], timeoutMs = 60_000, everyMs = 100): Promise<T> {
  return pollUntil(what, fn, timeoutMs, everyMs);
}

type AppName = 'api' | 'scheduler' | 'relay' | 'realtime';
const PORT_VAR: Record<AppName, string> = { api: 'API_PORT', scheduler: 'SCHEDULER_PORT', relay: 'RELAY_PORT', realtime: 'REALTIME_PORT' };

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface System {
  dir: string;
  redisUrl: string;
  apiUrl: string;
  realtimeUrl: string;
  /** A login (session) token of the admin. */
  token(): Promise<string>;
  api<T = unknown>(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: T }>;
  /** A fresh HOME and DUBGATE_CONFIG for one test, pointing at this system. */
  home(): { home: string; config: string; env: Record<string, string> };
  /** Runs the built CLI; never throws on a non-zero exit. */
  cli(args: string[], opts?: { env?: Record<string, string>; input?: string; timeoutMs?: number }): Promise<RunResult>;
  /**
   * Runs the built CLI with stdout on a pseudo-terminal (util-linux `script`), or null without
   * `script`. `onOutput` sees the output so far each time some arrives.
   */
  cliTty(args: string[], opts?: { env?: Record<string, string>; timeoutMs?: number; input?: string; onOutput?: (stdout: string) => void }): Promise<RunResult | null>;
  /** Starts the CLI and returns the child, for tests that act while it runs. */
  spawnCli(args: string[], opts?: { env?: Record<string, string> }): { child: ChildProcess; done: Promise<RunResult> };
  /**
   * Test stage workers: URL containing "fail" fails the download (UnrecoverableError); "hang" hangs it
   * until canceled; "slow" takes ~3 s; "gated" reports 10 % and then holds until `release(jobId)`.
   */
  startWorkers(): Promise<void>;
  /** Lets a "gated" download go on. */
  release(jobId: string): void;
  stop(): Promise<void>;
}

export async function startSystem(opts: { apps: AppName[] }): Promise<System> {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-cli-'));
  const mediaRoot = join(dir, 'media');
  mkdirSync(mediaRoot, { recursive: true });
  mkdirSync(join(dir, 'logs'));
  mkdirSync(join(dir, 'homes'));
  const redis = await startRedisServer({ dir });
  const redisUrl = redis.url;

  const ports = {} as Record<AppName, number>;
  for (const app of ['api', 'scheduler', 'relay', 'realtime'] as AppName[]) ports[app] = await freePort();
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    REDIS_URL: redisUrl,
    DB_PATH: join(dir, 'gateway.db'),
    MEDIA_ROOT: mediaRoot,
    JWT_SECRET: 'cli-test-secret-0123456789-0123456789-0123456789',
    ADMIN_USERNAME: 'admin',
    ADMIN_PASSWORD,
    ALLOW_PRIVATE_URLS: 'true',
    LOG_LEVEL: 'warn',
    NODE_ENV: 'test',
    SHUTDOWN_TIMEOUT_MS: '5000',
    STAGE_BACKOFF_MS: '200',
    RECONCILE_INTERVAL_MS: '2000',
    SCHEDULER_LOCK_TTL_MS: '2000',
    LOGIN_MAX_PER_CLIENT: '100000',
    LOGIN_MAX_PER_USERNAME: '100000',
    RELAY_FLUSH_INTERVAL_MS: '50',
  };
  const children = new Map<AppName, ChildProcess>();
  const workers: Worker[] = [];
  const redisClients: Redis[] = [];
  /** Job ids of "gated" downloads the test has let go. */
  const released = new Set<string>();
  /** CLI runs still going (killed at stop, so none outlives the suite). */
  const running = new Set<ChildProcess>();
  const track = (child: ChildProcess) => {
    running.add(child);
    child.once('close', () => running.delete(child));
  };

  async function start(app: AppName) {
    const log = join(dir, 'logs', `${app}.log`);
    const out = createWriteStream(log, { flags: 'a' });
    const child = spawn(process.execPath, [join(ROOT, 'apps', app, 'dist', 'server.js')], {
      env: { ...env, [PORT_VAR[app]]: String(ports[app]) },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    children.set(app, child);
    await new Promise<void>((resolve, reject) => {
      // Generous: on a loaded 2-core machine a cold start of a built process can take many seconds.
      const timer = setTimeout(() => reject(new Error(`${app} did not report ready; see ${log}`)), 60_000);
      child.once('message', (m) => {
        if (m === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        let tail = '';
        try {
          tail = readFileSync(log, 'utf8').slice(-2000);
        } catch {
          /* none */
        }
        reject(new Error(`${app} exited with ${code} before ready: ${tail}`));
      });
    });
  }

  async function kill(app: AppName) {
    const child = children.get(app);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 8000);
    await exited;
    clearTimeout(t);
    children.delete(app);
  }

  try {
    for (const app of opts.apps) await start(app);
  } catch (err) {
    for (const app of [...children.keys()].reverse()) await kill(app);
    await redis.stop();
    throw err;
  }

  const apiUrl = `http://127.0.0.1:${ports.api}`;
  const realtimeUrl = `http://127.0.0.1:${ports.realtime}`;
  let adminToken: string | null = null;
  let homes = 0;

  async function api<T>(method: string, path: string, body?: unknown, token?: string) {
    const res = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
  }

  /** Environment for the CLI: nothing inherited that could point it elsewhere. */
  function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
    const base: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', NO_COLOR: '1' };
    return { ...base, ...extra };
  }

  function spawnCli(args: string[], o: { env?: Record<string, string> } = {}) {
    const child = spawn(process.execPath, [CLI, ...args], { env: cliEnv(o.env), stdio: ['pipe', 'pipe', 'pipe'] });
    track(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<RunResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
    return { child, done };
  }

  async function cli(args: string[], o: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}) {
    const { child, done } = spawnCli(args, o);
    if (o.input !== undefined) child.stdin!.end(o.input);
    else child.stdin!.end();
    // A safety net only (a hung CLI must not outlive the test): far above what a run takes.
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 90_000);
    const r = await done;
    clearTimeout(timer);
    return r;
  }

  /** The terminal settings (`stty -a`) of the CLI under `script`, or '' while it is not there yet. */
  async function ttySettings(scriptPid: number): Promise<string> {
    const childrenOf = (pid: number) => {
      try {
        return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      } catch {
        return [];
      }
    };
    // script -> (a shell ->) node: the deepest descendant is the CLI.
    let pids = childrenOf(scriptPid);
    for (let next = pids.flatMap(childrenOf); next.length; next = next.flatMap(childrenOf)) pids = next;
    for (const pid of pids) {
      try {
        const tty = readlinkSync(`/proc/${pid}/fd/0`);
        if (!tty.startsWith('/dev/pts/')) continue;
        return (await execFileAsync('stty', ['-a', '-F', tty], { encoding: 'utf8' })).stdout;
      } catch {
        /* not there yet, or gone */
      }
    }
    return '';
  }

  async function cliTty(args: string[], o: { env?: Record<string, string>; timeoutMs?: number; input?: string; onOutput?: (stdout: string) => void } = {}): Promise<RunResult | null> {
    const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
    const command = [process.execPath, CLI, ...args].map(quote).join(' ');
    const child = spawn('script', ['-qefc', command, '/dev/null'], { env: { ...cliEnv(o.env), TERM: 'xterm', COLUMNS: '100' }, stdio: ['pipe', 'pipe', 'pipe'] });
    track(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // Typed in once the program shows its prompt AND has put the terminal in raw mode (readline
    // and the secret prompt both do, right after writing the prompt): typed earlier, the terminal
    // would still echo it. script passes stdin on to the terminal.
    let typed = false;
    child.stdout!.on('data', () => {
      o.onOutput?.(stdout);
      if (o.input !== undefined && !typed && /\[y\/N\] |password: /.test(stdout)) {
        typed = true;
        void waitFor('the CLI to put its terminal in raw mode', async () => / -icanon /.test(` ${(await ttySettings(child.pid!)).replace(/[;\n]/g, ' ')} `), 60_000, 20)
          .then(() => child.stdin!.write(o.input!))
          .catch(() => child.kill('SIGKILL'));
      }
    });
    const r = await new Promise<RunResult | null>((resolve) => {
      child.on('error', () => resolve(null));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 90_000).unref();
    });
    return r;
  }

  async function startWorkers() {
    const url = new URL(redisUrl);
    const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
    const pub = new Redis(redisUrl);
    redisClients.push(pub);
    const progress = async (jobId: string, stage: string, percent: number, seq: number) => {
      await pub.publish(
        'events:progress',
        JSON.stringify({ jobId, type: 'progress', timestamp: new Date().toISOString(), payload: { stage, percent, speed: 1_000_000, eta: 1, seq } }),
      );
    };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const make = (stage: 'download' | 'dub' | 'mux', fn: (job: BullJob, signal?: AbortSignal) => Promise<unknown>) => {
      const w = new Worker(stage, (job: BullJob, _token?: string, signal?: AbortSignal) => fn(job, signal), {
        connection,
        prefix: 'q',
        concurrency: 4,
        lockDuration: 5000,
      });
      w.on('error', () => {});
      workers.push(w);
    };
    let seq = 0;
    make('download', async (job, signal) => {
      const d = job.data as { jobId: string; url: string };
      if (d.url.includes('fail')) throw new UnrecoverableError('test worker: this media cannot be downloaded');
      await progress(d.jobId, 'download', 10, ++seq);
      if (d.url.includes('gated')) {
        // Holds at 10 % until the test lets it go, so a client started now sees it live.
        const deadline = Date.now() + 120_000;
        while (!released.has(d.jobId) && !signal?.aborted && Date.now() < deadline) await sleep(50);
      }
      if (d.url.includes('hang')) {
        const deadline = Date.now() + 20_000;
        while (!signal?.aborted && Date.now() < deadline) await sleep(50);
        throw new UnrecoverableError('test worker: canceled');
      }
      // "slow" jobs take a few seconds, so a client that starts following after submitting sees them live.
      const step = d.url.includes('slow') ? 800 : 200;
      for (const pct of [30, 60, 90]) {
        await sleep(step);
        await progress(d.jobId, 'download', pct, ++seq);
      }
      await sleep(step);
      return { mediaPath: `${d.jobId}/source.mp4`, sizeBytes: 1, title: 'test video' };
    });
    make('dub', async (job) => {
      const d = job.data as { jobId: string; targetLang: string };
      await progress(d.jobId, 'dub', 50, ++seq);
      return { audioPath: `${d.jobId}/dubbed.m4a`, language: d.targetLang, cues: 1 };
    });
    make('mux', async (job) => {
      const d = job.data as { jobId: string; outputContainer: string };
      await progress(d.jobId, 'mux', 50, ++seq);
      return { outputPath: `${d.jobId}/output.${d.outputContainer}`, container: d.outputContainer, sizeBytes: 1 };
    });
    await Promise.all(workers.map((w) => w.waitUntilReady()));
  }

  return {
    dir,
    redisUrl,
    apiUrl,
    realtimeUrl,
    api,
    async token() {
      if (!adminToken) {
        const r = await api<{ token: string }>('POST', '/api/auth/login', { username: 'admin', password: ADMIN_PASSWORD });
        adminToken = r.body.token;
      }
      return adminToken;
    },
    home() {
      const home = join(dir, 'homes', `h${++homes}`);
      mkdirSync(home, { recursive: true });
      const config = join(home, '.config', 'dubgate', 'config.json');
      return { home, config, env: { HOME: home, DUBGATE_CONFIG: config, DUBGATE_API_URL: apiUrl, DUBGATE_REALTIME_URL: realtimeUrl } };
    },
    cli,
    cliTty,
    spawnCli,
    startWorkers,
    release: (jobId) => void released.add(jobId),
    async stop() {
      for (const child of running) child.kill('SIGKILL');
      await Promise.allSettled(workers.map((w) => w.close(true)));
      for (const c of redisClients) c.disconnect();
      for (const app of [...children.keys()].reverse()) await kill(app);
      await redis.stop();
      if (!process.env.CLI_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
    },
  };
}
