import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './net.js';

export interface RedisServer {
  port: number;
  url: string;
  process: ChildProcess;
  /** SIGTERM, and resolves when it has exited. Safe twice. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: AOF keeps only what was fsynced), and resolves when it has exited. */
  kill(): Promise<void>;
}

export interface RedisServerOptions {
  /** A given port (a restart on the same one); default: a free one, another if it was taken. */
  port?: number;
  /** Working directory (AOF, RDB); default: redis-server's own, with persistence off. */
  dir?: string;
  /** Further redis-server options, e.g. ['--appendonly', 'yes']; they win over the defaults. */
  args?: string[];
  /** How long to wait for "Ready to accept connections". */
  readyTimeoutMs?: number;
}

/**
 * A redis-server of the test's own, in the foreground (a child the test stops). Ready is what
 * redis-server itself prints once it accepts connections (after loading its AOF), not merely
 * "something listens on the port". A free port can be taken by another process before
 * redis-server binds it: then it exits at once and another port is tried.
 */
export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServer> {
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const started = await spawnRedis(port, opts);
    if ('server' in started) return started.server;
    if (opts.port !== undefined || attempt >= 5) {
      throw new Error(`redis-server on port ${port} did not start: ${started.reason}\n${started.output.slice(-2000)}`);
    }
  }
}

type Spawned = { server: RedisServer } | { reason: string; output: string };

function spawnRedis(port: number, opts: RedisServerOptions): Promise<Spawned> {
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no',
    ...(opts.dir ? ['--dir', opts.dir] : []),
    ...(opts.args ?? []),
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let output = '';
  const timeoutMs = opts.readyTimeoutMs ?? 30_000;
  return new Promise<Spawned>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ reason: `not ready within ${timeoutMs} ms`, output });
    }, timeoutMs);
    const onData = (chunk: string) => {
      // Keep only the start: once ready, its log is drained and dropped.
      if (output.length < 64_000) output += chunk;
      if (!output.includes('Ready to accept connections')) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve({ server: handle(port, child, exited) });
    };
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      if (output.length < 64_000) output += chunk;
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ reason: err.message, output });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ reason: `exited at start (code ${code}, signal ${signal})`, output });
    });
  });
}

function handle(port: number, child: ChildProcess, exited: Promise<void>): RedisServer {
  const end = (signal: NodeJS.Signals) => async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { port, url: `redis://127.0.0.1:${port}`, process: child, stop: end('SIGTERM'), kill: end('SIGKILL') };
}
