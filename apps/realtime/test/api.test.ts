// With the real api (as built) on the same Redis and key prefix: a user logs in, creates a job
// (the api writes its owner to Redis), subscribes over the WebSocket; another user cannot; logout
// and disabling the user close the live sockets at once.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rooms, type SubscriptionAck } from '@dubgate/contracts/ws';
// The api as built (a devDependency, so Turborepo builds it first); realtime itself never imports it.
import { buildApp } from '../../api/dist/app.js';
import { loadApiConfig } from '../../api/dist/config.js';
import {
  JWT_SECRET,
  connectError,
  connected,
  createTestEnv,
  disconnected,
  nextEvent,
  rand,
  record,
  redisUrl,
  request,
  WAIT_MS,
  waitFor,
  type TestEnv,
  type TestNode,
} from './helpers.js';

type Api = Awaited<ReturnType<typeof buildApp>>;
interface Login {
  token: string;
  csrfToken: string;
  cookie: string;
  user: { id: string; role: string };
}

const ADMIN_PASSWORD = 'admin-password-for-realtime-tests';
const USER_PASSWORD = 'user-password-for-realtime-tests';

let env: TestEnv;
let node: TestNode;
let api: Api;
let dir: string;
let queuePrefix: string;
let admin: Login;

async function login(username: string, password: string): Promise<Login> {
  const res = await api.inject({ method: 'POST', url: '/api/auth/login', payload: { username, password } });
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
  const body = res.json<{ token: string; csrfToken: string; user: Login['user'] }>();
  const raw = res.headers['set-cookie'];
  const setCookie = (Array.isArray(raw) ? raw.find((c) => c.startsWith('dubgate_session=')) : raw) ?? '';
  return { ...body, cookie: setCookie.split(';')[0]! };
}

async function createUser(username: string): Promise<Login> {
  const res = await api.inject({
    method: 'POST',
    url: '/api/users',
    headers: { authorization: `Bearer ${admin.token}` },
    payload: { username, password: USER_PASSWORD },
  });
  if (res.statusCode !== 201) throw new Error(`creating ${username} failed: ${res.statusCode} ${res.body}`);
  return login(username, USER_PASSWORD);
}

async function createJob(token: string): Promise<string> {
  const res = await api.inject({
    method: 'POST',
    url: '/api/jobs',
    headers: { authorization: `Bearer ${token}` },
    payload: { url: `https://videos.example.com/watch/${rand()}` },
  });
  if (res.statusCode !== 201) throw new Error(`creating a job failed: ${res.statusCode} ${res.body}`);
  return res.json<{ job: { id: string } }>().job.id;
}

beforeAll(async () => {
  env = createTestEnv('api');
  node = await env.startNode();
  dir = mkdtempSync(join(tmpdir(), 'dubgate-realtime-api-'));
  queuePrefix = `qt-realtime-${rand()}`;
  const config = loadApiConfig({
    env: {
      DB_PATH: join(dir, 'data', 'gateway.db'),
      MEDIA_ROOT: join(dir, 'media'),
      REDIS_URL: redisUrl(),
      JWT_SECRET,
      ADMIN_USERNAME: 'admin',
      ADMIN_PASSWORD,
      LOG_LEVEL: 'silent',
    },
    envFile: false,
  });
  api = await buildApp({ config: { ...config, queuePrefix, gatewayKeyPrefix: env.gatewayKeyPrefix } });
  admin = await login('admin', ADMIN_PASSWORD);
});

afterAll(async () => {
  await api?.close();
  if (env) {
    let cursor = '0';
    do {
      const [next, keys] = await env.redis.scan(cursor, 'MATCH', `${queuePrefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await env.redis.del(...keys);
    } while (cursor !== '0');
    await env.cleanup();
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('with the api', () => {
  it('a job created through the api can be subscribed to by its owner and by an admin, not by another user', async () => {
    const carol = await createUser(`carol${rand()}`);
    const dave = await createUser(`dave${rand()}`);
    const jobId = await createJob(carol.token);
    await waitFor(async () => (await env.redis.exists(`${env.gatewayKeyPrefix}:job-owner:${jobId}`)) === 1, WAIT_MS, 'owner key written');

    const mine = env.connect(node.url, { auth: { token: carol.token } });
    const theirs = env.connect(node.url, { auth: { token: dave.token } });
    // A browser: the session cookie from the login answer.
    const adminBrowser = env.connect(node.url, { extraHeaders: { cookie: admin.cookie } });
    await Promise.all([connected(mine), connected(theirs), connected(adminBrowser)]);

    expect(await request<SubscriptionAck>(mine, 'subscribe', [jobId])).toEqual({ ok: true, results: [{ jobId, accepted: true }] });
    expect(await request<SubscriptionAck>(theirs, 'subscribe', [jobId])).toEqual({ ok: true, results: [{ jobId, accepted: false, code: 'JOB_NOT_FOUND' }] });
    expect(await request<SubscriptionAck>(adminBrowser, 'subscribe', [jobId])).toEqual({ ok: true, results: [{ jobId, accepted: true }] });

    const seenByDave = record(theirs);
    const ts = new Date().toISOString();
    env.emitter.to(rooms.job(jobId)).emit('state_change', { jobId, from: 'QUEUED', to: 'DOWNLOADING', timestamp: ts });
    expect(await nextEvent(mine, 'state_change')).toEqual({ jobId, from: 'QUEUED', to: 'DOWNLOADING', timestamp: ts });
    expect(await nextEvent(adminBrowser, 'state_change')).toMatchObject({ jobId });
    expect(seenByDave).toEqual([]);
  });

  it('POST /api/auth/logout disconnects the live socket of that session at once, and the token is refused afterwards', async () => {
    const username = `erin${rand()}`;
    const erin = await createUser(username);
    const otherSession = await login(username, USER_PASSWORD);
    const socket = env.connect(node.url, { auth: { token: erin.token } });
    const other = env.connect(node.url, { auth: { token: otherSession.token } });
    await Promise.all([connected(socket), connected(other)]);
    const got = record(socket);
    const gone = disconnected(socket);

    const res = await api.inject({ method: 'POST', url: '/api/auth/logout', headers: { authorization: `Bearer ${erin.token}` } });
    expect(res.statusCode).toBe(204);
    expect(await gone).toBe('io server disconnect');
    expect(got).toContainEqual({ event: 'error', payload: { code: 'SESSION_REVOKED', message: expect.any(String) } });
    // The other session of the same user lives on.
    expect(other.connected).toBe(true);
    // The same token cannot come back.
    expect((await connectError(env.connect(node.url, { auth: { token: erin.token } }))).data?.code).toBe('SESSION_REVOKED');
  });

  it('disabling a user disconnects all their sockets; enabling them again lets a new login connect', async () => {
    const username = `frank${rand()}`;
    const frank = await createUser(username);
    const socket = env.connect(node.url, { auth: { token: frank.token } });
    await connected(socket);
    const gone = disconnected(socket);
    const got = record(socket);

    const patch = (disabled: boolean) =>
      api.inject({ method: 'PATCH', url: `/api/users/${frank.user.id}`, headers: { authorization: `Bearer ${admin.token}` }, payload: { disabled } });
    expect((await patch(true)).statusCode).toBe(200);
    expect(await gone).toBe('io server disconnect');
    expect(got).toContainEqual({ event: 'error', payload: { code: 'USER_DISABLED', message: expect.any(String) } });
    // The old token is refused at the door: the session is revoked in SQLite, the user marked in Redis.
    expect((await connectError(env.connect(node.url, { auth: { token: frank.token } }))).data?.code).toBe('USER_DISABLED');

    expect((await patch(false)).statusCode).toBe(200);
    const again = await login(username, USER_PASSWORD);
    await connected(env.connect(node.url, { auth: { token: again.token } }));
  });
});

