/**
 * The api's resources are released on every path: a start that fails after SQLite and Redis
 * were opened, and a close whose group-commit flush throws. Each test has its own redis-server,
 * so CLIENT LIST shows only the api's connections and this test's own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '@dubgate/db/open';
import { createMetrics } from '@dubgate/runtime/metrics';
import { startRedisServer, type RedisServer } from '@dubgate/test-support/redis-server';
import { buildApp } from '../src/app.js';
import { loadApiConfig, type ApiConfig } from '../src/config.js';
import { ADMIN_PASSWORD, ADMIN_USERNAME, JWT_SECRET } from './helpers.js';

// Wraps the real group commit so a test can make its flush() throw at close; unarmed it is
// the real one (the api's own writes still commit on setImmediate through the inner flush).
const flushFailure = vi.hoisted(() => ({ armed: false }));
vi.mock(import('@dubgate/db/group-commit'), async (importOriginal) => {
  const original = await importOriginal();
  return {
    ...original,
    createGroupCommit: (...args: Parameters<typeof original.createGroupCommit>) => {
      const inner = original.createGroupCommit(...args);
      return {
        run: inner.run,
        flush() {
          if (flushFailure.armed) throw new Error('flush failed (test)');
          inner.flush();
        },
        get pending() {
          return inner.pending;
        },
      };
    },
  };
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  flushFailure.armed = false;
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ config: ApiConfig; dbPath: string; server: RedisServer; probe: Redis }> {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-api-resources-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const server = await startRedisServer();
  cleanups.push(() => server.stop());
  const probe = new Redis(server.url, { maxRetriesPerRequest: 1, connectionName: 'test-probe' });
  cleanups.push(() => void probe.disconnect());
  const dbPath = join(dir, 'data', 'gateway.db');
  const config = loadApiConfig({
    env: {
      DB_PATH: dbPath,
      MEDIA_ROOT: join(dir, 'media'),
      REDIS_URL: server.url,
      JWT_SECRET,
      ADMIN_USERNAME,
      ADMIN_PASSWORD,
      LOG_LEVEL: 'silent',
    },
    envFile: false,
  });
  return { config, dbPath, server, probe };
}

/** Names of the clients connected to the test's Redis other than the probe itself. */
async function otherClients(probe: Redis): Promise<string[]> {
  const list = (await probe.client('LIST')) as string;
  return list
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '')
    .filter((name) => name !== 'test-probe');
}

/** The server drops a client a moment after its QUIT is answered: wait for that, bounded. */
async function clientsAfterClose(probe: Redis): Promise<string[]> {
  const until = Date.now() + 2_000;
  let names = await otherClients(probe);
  while (names.length > 0 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 25));
    names = await otherClients(probe);
  }
  return names;
}

/**
 * Leaving WAL mode needs the only connection to the file: it fails ("database is locked")
 * while the api still holds its SQLite connection open.
 */
function soleConnection(dbPath: string): boolean {
  const db = openDatabase(dbPath, { migrate: false, busyTimeoutMs: 0 });
  try {
    return db.pragma('journal_mode = DELETE', { simple: true }) === 'delete';
  } catch {
    return false;
  } finally {
    db.close();
  }
}

describe('api resources', () => {
  it('a start that fails after SQLite and Redis were opened still closes both', async () => {
    const { config, dbPath, probe } = await setup();
    // A real late failure: the metrics registry given in already has the api's job counter,
    // which buildApp registers only after SQLite, Redis and the queues are up.
    const metrics = createMetrics({ service: 'api', defaultMetrics: false });
    metrics.counter({ name: 'jobs_created_total', help: 'registered by the caller first' });

    await expect(buildApp({ config, metrics })).rejects.toThrow(/jobs_created_total/);

    expect(soleConnection(dbPath)).toBe(true);
    expect(await clientsAfterClose(probe)).toEqual([]);
  });

  it('a close whose group-commit flush throws still closes SQLite and Redis', async () => {
    const { config, dbPath, probe } = await setup();
    const app = await buildApp({ config });
    await app.ready();
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect(await otherClients(probe)).not.toEqual([]);
    expect(soleConnection(dbPath)).toBe(false);

    flushFailure.armed = true;
    await app.close().catch(() => {});

    expect(soleConnection(dbPath)).toBe(true);
    expect(await clientsAfterClose(probe)).toEqual([]);
  });
});
