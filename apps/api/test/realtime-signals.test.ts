// What the api tells realtime nodes (which never read SQLite) so live sockets close at once:
// logout publishes the session id, disabling a user sets a key and publishes the user id.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { SESSION_REVOKED_CHANNEL, USER_DISABLED_CHANNEL } from '@dubgate/contracts/auth';
import {
  bearer,
  createTestApp,
  createUser,
  decodeJwtPayload,
  loginAdmin,
  redisUrl,
  startRedis,
  waitFor,
  type Login,
  type TestApp,
} from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 90_000, hookTimeout: 60_000 });

let t: TestApp;
let admin: Login;
let sub: Redis;
const received: Array<{ channel: string; message: string }> = [];

beforeAll(async () => {
  t = await createTestApp({ name: 'realtime-signals' });
  admin = await loginAdmin(t.app);
  sub = new Redis(redisUrl(), { maxRetriesPerRequest: null });
  sub.on('message', (channel: string, message: string) => received.push({ channel, message }));
  await sub.subscribe(SESSION_REVOKED_CHANNEL, USER_DISABLED_CHANNEL);
});
afterAll(async () => {
  sub?.disconnect();
  await t?.close();
});

const patchUser = (id: string, disabled: boolean) =>
  t.app.inject({ method: 'PATCH', url: `/api/users/${id}`, headers: bearer(admin.token), payload: { disabled } });

describe('signals for realtime nodes', () => {
  it('logout publishes the session id on the session-revoked channel, after setting the key', async () => {
    const l = await loginAdmin(t.app);
    const sid = decodeJwtPayload(l.token).sid as string;
    const res = await t.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(l.token) });
    expect(res.statusCode).toBe(204);
    await waitFor(() => received.some((m) => m.channel === SESSION_REVOKED_CHANNEL && m.message === sid));
    // The key is already there when the message arrives, so a node that checks on receipt agrees.
    expect(await t.redis().exists(`${t.gatewayKeyPrefix}:session-revoked:${sid}`)).toBe(1);
    // Nothing else is published for a logout. (The channel is global to the Redis: other suites'
    // users may be disabled meanwhile, so only this app's users count.)
    const ours = new Set(t.db().prepare('SELECT id FROM users').pluck().all() as string[]);
    expect(received.filter((m) => m.channel === USER_DISABLED_CHANNEL && ours.has(m.message))).toEqual([]);
  });

  it('disabling a user sets user-disabled (no TTL) and publishes the user id; enabling deletes the key', async () => {
    const u = await createUser(t.app, admin.token, `ruth${Date.now()}`);
    const key = `${t.gatewayKeyPrefix}:user-disabled:${u.user.id}`;
    expect(await t.redis().exists(key)).toBe(0);

    expect((await patchUser(u.user.id, true)).statusCode).toBe(200);
    await waitFor(() => received.some((m) => m.channel === USER_DISABLED_CHANNEL && m.message === u.user.id));
    expect(await t.redis().exists(key)).toBe(1);
    expect(await t.redis().pttl(key)).toBe(-1);

    expect((await patchUser(u.user.id, false)).statusCode).toBe(200);
    expect(await t.redis().exists(key)).toBe(0);
    // Enabling publishes nothing: there is no live socket to close.
    expect(received.filter((m) => m.channel === USER_DISABLED_CHANNEL && m.message === u.user.id)).toHaveLength(1);
  });

  it('with Redis down, disabling still answers 200 and the change holds in SQLite', async () => {
    const own = await startRedis();
    const o = await createTestApp({ name: 'realtime-signals-down', redisUrl: own.url });
    try {
      const oAdmin = await loginAdmin(o.app);
      const u = await createUser(o.app, oAdmin.token, 'victor');
      await own.stop();
      const res = await o.app.inject({ method: 'PATCH', url: `/api/users/${u.user.id}`, headers: bearer(oAdmin.token), payload: { disabled: true } });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ user: { disabled: boolean } }>().user.disabled).toBe(true);
      const logout = await o.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(oAdmin.token) });
      expect(logout.statusCode).toBe(204);
    } finally {
      await o.close();
      await own.stop();
    }
  });
});
