import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { DownloadPayload, DubPayload, MuxPayload } from '@dubgate/contracts/stages';
import type { Logger } from '../src/connections.js';

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL must point at a disposable Redis for these tests');
  return url;
}

export const rand = (): string => randomBytes(5).toString('hex');
/** A queue prefix no other test run uses. */
export const uniquePrefix = (): string => `q-test-${rand()}`;
export const uniqueJobId = (): string => `job-${rand()}`;

/** Every key under `prefix:` (SCAN, not KEYS, like production code would). */
export async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

export async function deleteKeysUnder(redis: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(redis, prefix);
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
}

export interface CapturingLogger extends Logger {
  entries: Array<{ level: string; obj: object; msg: string | undefined }>;
}
export function capturingLogger(): CapturingLogger {
  const entries: CapturingLogger['entries'] = [];
  const at = (level: string) => (obj: object, msg?: string) => void entries.push({ level, obj, msg });
  return { entries, info: at('info'), warn: at('warn'), error: at('error') };
}

/** A TCP port with nothing listening on it. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A "Redis" that completes the ioredis handshake (CLIENT, INFO) and then never answers anything
 * else: the hung-server case that only timeouts can bound.
 */
export async function startHungRedis(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const parsed = parseRespCommand(buf);
        if (!parsed) break;
        buf = buf.slice(parsed.consumed);
        const cmd = parsed.args[0]?.toUpperCase();
        if (cmd === 'INFO') {
          const info = '# Server\r\nredis_version:7.0.0\r\nloading:0\r\n';
          sock.write(`$${Buffer.byteLength(info)}\r\n${info}\r\n`);
        } else if (cmd === 'CLIENT' || cmd === 'SELECT') {
          sock.write('+OK\r\n');
        }
        // Anything else: silence.
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function parseRespCommand(buf: string): { args: string[]; consumed: number } | null {
  if (!buf.startsWith('*')) return null;
  const head = buf.indexOf('\r\n');
  if (head < 0) return null;
  const n = Number(buf.slice(1, head));
  let pos = head + 2;
  const args: string[] = [];
  for (let k = 0; k < n; k++) {
    if (buf[pos] !== '$') return null;
    const lenEnd = buf.indexOf('\r\n', pos);
    if (lenEnd < 0) return null;
    const len = Number(buf.slice(pos + 1, lenEnd));
    const start = lenEnd + 2;
    if (buf.length < start + len + 2) return null;
    args.push(buf.slice(start, start + len));
    pos = start + len + 2;
  }
  return { args, consumed: pos };
}

export function downloadPayload(jobId: string, generation = 0): DownloadPayload {
  return {
    jobId,
    generation,
    workDir: jobId,
    url: 'https://example.com/watch?v=abc',
    formatPreset: 'best',
    wantSubtitles: false,
  };
}

export function dubPayload(jobId: string, generation = 0): DubPayload {
  return { jobId, generation, workDir: jobId, mediaPath: `${jobId}/source.mp4`, targetLang: 'de' };
}

export function muxPayload(jobId: string, generation = 0): MuxPayload {
  return { jobId, generation, workDir: jobId, mediaPath: `${jobId}/source.mp4`, outputContainer: 'mp4' };
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 5_000, stepMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
