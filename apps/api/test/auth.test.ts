// Authentication and authorization: login, logout and revocation (SQLite and Redis), forged and
// expired JWTs, cookie sessions with CSRF, API tokens, users and roles, login rate limits.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_PASSWORD,
  ADMIN_USERNAME,
  USER_PASSWORD,
  bearer,
  counts,
  createJob,
  createTestApp,
  createUser,
  decodeJwtPayload,
  expectError,
  login,
  loginAdmin,
  signJwt,
  videoUrl,
  type Login,
  type TestApp,
} from './helpers.js';

let t: TestApp;
let admin: Login;

beforeAll(async () => {
  t = await createTestApp({ name: 'auth' });
  admin = await loginAdmin(t.app);
});
afterAll(async () => {
  await t?.close();
});

const session = (headers: Record<string, string>) => t.app.inject({ method: 'GET', url: '/api/auth/session', headers });

describe('login', () => {
  it('returns a JWT with iss, aud, exp and a session id, and sets an httpOnly SameSite=Strict cookie', async () => {
    const l = await loginAdmin(t.app);
    const body = l.response.json<{ token: string; expiresAt: string; csrfToken: string; user: { username: string; role: string } }>();
    expect(body.user).toMatchObject({ username: ADMIN_USERNAME, role: 'admin' });
    expect(body.csrfToken.length).toBeGreaterThanOrEqual(20);
    expect(Date.parse(body.expiresAt)).toBeGreaterThan(Date.now());

    const header = JSON.parse(Buffer.from(l.token.split('.')[0]!, 'base64url').toString()) as { alg: string };
    expect(header.alg).toBe('HS256');
    const claims = decodeJwtPayload(l.token);
    expect(claims).toMatchObject({ iss: 'dubgate', aud: 'dubgate', sub: l.user.id, role: 'admin' });
    expect(typeof claims.sid).toBe('string');
    expect(claims.exp).toEqual(expect.any(Number));
    // The password never travels back.
    expect(l.response.body).not.toContain(ADMIN_PASSWORD);

    const cookie = l.setCookie;
    expect(cookie).toMatch(/^dubgate_session=[^;]+/);
    expect(cookie).toMatch(/;\s*HttpOnly/i);
    expect(cookie).toMatch(/;\s*SameSite=Strict/i);
    expect(cookie).toMatch(/;\s*Path=\//i);
    expect(cookie.split(';')[0]).toBe(`dubgate_session=${l.token}`);
  });

  it('marks the cookie Secure when COOKIE_SECURE is set', async () => {
    const secure = await createTestApp({ name: 'auth-secure', env: { COOKIE_SECURE: 'true' } });
    try {
      const l = await loginAdmin(secure.app);
      expect(l.setCookie).toMatch(/;\s*Secure/i);
      expect(l.setCookie).toMatch(/;\s*HttpOnly/i);
    } finally {
      await secure.close();
    }
    expect((await loginAdmin(t.app)).setCookie).not.toMatch(/;\s*Secure/i);
  });

  it('refuses a wrong password and an unknown user alike', async () => {
    const before = counts(t.db());
    const wrong = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: ADMIN_USERNAME, password: 'nope' } });
    const unknown = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'nobody', password: 'nope' } });
    expectError(wrong, 401, 'INVALID_CREDENTIALS');
    expectError(unknown, 401, 'INVALID_CREDENTIALS');
    expect(wrong.json<{ error: { message: string } }>().error.message).toBe(unknown.json<{ error: { message: string } }>().error.message);
    expect(wrong.headers['set-cookie']).toBeUndefined();
    expect(counts(t.db())).toEqual(before);
  });

  it('refuses malformed bodies', async () => {
    expectError(await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: ADMIN_USERNAME } }), 400, 'VALIDATION_FAILED');
    expectError(
      await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: ADMIN_USERNAME, password: ADMIN_PASSWORD, role: 'admin' } }),
      400,
      'VALIDATION_FAILED',
    );
    expectError(await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 1, password: 2 } }), 400, 'VALIDATION_FAILED');
  });
});

describe('GET /api/auth/session', () => {
  it('tells who is logged in and gives the CSRF token', async () => {
    const res = await session(bearer(admin.token));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ user: { id: admin.user.id, username: ADMIN_USERNAME, role: 'admin' }, csrfToken: admin.csrfToken });
    // Through the cookie (a browser after a reload), which is how it learns its CSRF token.
    const viaCookie = await session({ cookie: admin.cookie });
    expect(viaCookie.statusCode).toBe(200);
    expect(viaCookie.json<{ csrfToken: string }>().csrfToken).toBe(admin.csrfToken);
  });

  it('needs authentication', async () => {
    expectError(await session({}), 401, 'UNAUTHENTICATED');
    expectError(await session({ authorization: 'Basic YWRtaW46YWRtaW4=' }), 401, 'TOKEN_INVALID');
    expectError(await session({ authorization: 'Bearer' }), 401, 'TOKEN_INVALID');
    expectError(await session(bearer('garbage')), 401, 'TOKEN_INVALID');
    expectError(await session({ cookie: 'dubgate_session=garbage' }), 401, 'TOKEN_INVALID');
  });
});

describe('logout', () => {
  it('revokes the session everywhere: the token answers 401 SESSION_REVOKED and Redis holds the revocation with a TTL', async () => {
    const l = await loginAdmin(t.app);
    expect((await session(bearer(l.token))).statusCode).toBe(200);
    const res = await t.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(l.token) });
    expect(res.statusCode).toBe(204);
    const cleared = String(res.headers['set-cookie'] ?? '');
    expect(cleared).toMatch(/^dubgate_session=;/);

    expectError(await session(bearer(l.token)), 401, 'SESSION_REVOKED');
    expectError(await session({ cookie: l.cookie }), 401, 'SESSION_REVOKED');
    expectError(await t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(l.token), payload: { url: videoUrl() } }), 401, 'SESSION_REVOKED');

    const sid = decodeJwtPayload(l.token).sid as string;
    const key = `${t.gatewayKeyPrefix}:session-revoked:${sid}`;
    expect(await t.redis().exists(key)).toBe(1);
    const ttl = await t.redis().pttl(key);
    expect(ttl).toBeGreaterThan(0);
    const exp = decodeJwtPayload(l.token).exp as number;
    expect(ttl).toBeLessThanOrEqual(exp * 1000 - Date.now() + 5_000);

    // Other sessions of the same user live on.
    expect((await session(bearer(admin.token))).statusCode).toBe(200);
  });

  it('needs authentication', async () => {
    expectError(await t.app.inject({ method: 'POST', url: '/api/auth/logout' }), 401, 'UNAUTHENTICATED');
  });
});

describe('forged and stale tokens', () => {
  let claims: Record<string, unknown>;
  beforeAll(() => {
    claims = decodeJwtPayload(admin.token);
  });
  const now = () => Math.floor(Date.now() / 1000);

  it('accepts a token signed by hand like the server signs (so the refusals below mean something)', async () => {
    const token = signJwt({ ...claims, iat: now(), exp: now() + 600 });
    expect((await session(bearer(token))).statusCode).toBe(200);
  });

  it('refuses an expired token with 401 TOKEN_EXPIRED', async () => {
    const token = signJwt({ ...claims, iat: now() - 7200, exp: now() - 3600 });
    expectError(await session(bearer(token)), 401, 'TOKEN_EXPIRED');
    expectError(await session({ cookie: `dubgate_session=${token}` }), 401, 'TOKEN_EXPIRED');
  });

  it.each([
    ['alg none', () => signJwt({ ...claims, exp: now() + 600 }, { alg: 'none' })],
    ['alg none without the trailing dot', () => signJwt({ ...claims, exp: now() + 600 }, { alg: 'none' }).slice(0, -1)],
    ['another key', () => signJwt({ ...claims, exp: now() + 600 }, { secret: 'another-secret-another-secret-another-secret!' })],
    ['HS512 with the right key (algorithm pinned to HS256)', () => signJwt({ ...claims, exp: now() + 600 }, { alg: 'HS512' })],
    ['a wrong issuer', () => signJwt({ ...claims, iss: 'someone-else', exp: now() + 600 })],
    ['a wrong audience', () => signJwt({ ...claims, aud: 'another-service', exp: now() + 600 })],
    ['no expiry', () => signJwt({ sub: claims.sub, sid: claims.sid, role: 'admin', iss: 'dubgate', aud: 'dubgate' })],
    ['no session id', () => signJwt({ sub: claims.sub, role: 'admin', iss: 'dubgate', aud: 'dubgate', exp: now() + 600 })],
    ['a tampered payload', () => {
      const [h, , s] = admin.token.split('.');
      const p = Buffer.from(JSON.stringify({ ...claims, role: 'admin', sub: 'someone' })).toString('base64url');
      return `${h}.${p}.${s}`;
    }],
  ])('refuses a token with %s with 401', async (_name, make) => {
    const token = make();
    const res = await session(bearer(token));
    const body = expectError(res, 401);
    expect(['TOKEN_INVALID', 'SESSION_REVOKED']).toContain(body.error.code);
    const before = counts(t.db());
    expectError(await t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(token), payload: { url: videoUrl() } }), 401);
    expect(counts(t.db())).toEqual(before);
  });

  it('refuses a well-signed token whose session does not exist', async () => {
    const token = signJwt({ ...claims, sid: 'no-such-session', exp: now() + 600 });
    expectError(await session(bearer(token)), 401, 'SESSION_REVOKED');
  });

  it('refuses a well-signed token naming another user than its session', async () => {
    const bob = await createUser(t.app, admin.token, 'forger');
    const token = signJwt({ ...claims, sub: bob.user.id, exp: now() + 600 });
    expectError(await session(bearer(token)), 401, 'SESSION_REVOKED');
  });
});

describe('cookie sessions and CSRF', () => {
  let l: Login;
  beforeAll(async () => {
    l = await loginAdmin(t.app);
  });

  it('reads with the cookie alone', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/api/jobs', headers: { cookie: l.cookie } })).statusCode).toBe(200);
  });

  it('refuses a state-changing cookie request without a CSRF token, writing nothing', async () => {
    const before = counts(t.db());
    const res = await t.app.inject({ method: 'POST', url: '/api/jobs', headers: { cookie: l.cookie }, payload: { url: videoUrl() } });
    expectError(res, 403, 'CSRF_TOKEN_INVALID');
    expect(counts(t.db())).toEqual(before);
  });

  it('refuses a wrong or another session’s CSRF token', async () => {
    const other = await loginAdmin(t.app);
    const before = counts(t.db());
    for (const csrf of ['wrong', other.csrfToken, '', `${l.csrfToken}x`]) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/jobs',
        headers: { cookie: l.cookie, 'x-csrf-token': csrf },
        payload: { url: videoUrl() },
      });
      expectError(res, 403, 'CSRF_TOKEN_INVALID');
    }
    expect(counts(t.db())).toEqual(before);
  });

  it('guards every state-changing method, not just POST /api/jobs', async () => {
    const job = await createJob(t.app, l.token);
    const before = counts(t.db());
    expectError(await t.app.inject({ method: 'POST', url: `/api/jobs/${job.id}/cancel`, headers: { cookie: l.cookie } }), 403, 'CSRF_TOKEN_INVALID');
    expectError(await t.app.inject({ method: 'DELETE', url: `/api/jobs/${job.id}`, headers: { cookie: l.cookie } }), 403, 'CSRF_TOKEN_INVALID');
    expectError(await t.app.inject({ method: 'POST', url: '/api/auth/tokens', headers: { cookie: l.cookie }, payload: { name: 'x' } }), 403, 'CSRF_TOKEN_INVALID');
    expectError(await t.app.inject({ method: 'POST', url: '/api/auth/logout', headers: { cookie: l.cookie } }), 403, 'CSRF_TOKEN_INVALID');
    expect(counts(t.db())).toEqual(before);
    expect(t.db().prepare('SELECT state FROM jobs WHERE id = ?').pluck().get(job.id)).toBe('QUEUED');
  });

  it('logs out through the cookie with the CSRF token', async () => {
    const own = await loginAdmin(t.app);
    const res = await t.app.inject({ method: 'POST', url: '/api/auth/logout', headers: { cookie: own.cookie, 'x-csrf-token': own.csrfToken } });
    expect(res.statusCode).toBe(204);
    expectError(await session({ cookie: own.cookie }), 401, 'SESSION_REVOKED');
  });

  it('accepts a cookie request with the right CSRF token', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/jobs',
      headers: { cookie: l.cookie, 'x-csrf-token': l.csrfToken },
      payload: { url: videoUrl() },
    });
    expect(res.statusCode).toBe(201);
  });

  it('needs no CSRF token with a Bearer token', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(l.token), payload: { url: videoUrl() } });
    expect(res.statusCode).toBe(201);
  });
});

describe('API tokens', () => {
  it('are created once, used as Bearer, listed without the secret, revoked, then refused', async () => {
    const created = await t.app.inject({ method: 'POST', url: '/api/auth/tokens', headers: bearer(admin.token), payload: { name: 'cli' } });
    expect(created.statusCode).toBe(201);
    const { token, apiToken } = created.json<{ token: string; apiToken: { id: string; name: string; lastUsedAt: string | null } }>();
    expect(token).toMatch(/^dgt_[A-Za-z0-9_-]{40,}$/);
    expect(apiToken).toMatchObject({ name: 'cli', lastUsedAt: null });
    // Stored hashed only.
    expect(JSON.stringify(t.db().prepare('SELECT * FROM api_tokens').all())).not.toContain(token);

    const me = await session(bearer(token));
    expect(me.statusCode).toBe(200);
    expect(me.json()).toMatchObject({ user: { id: admin.user.id }, csrfToken: null });
    // Bearer API tokens need no CSRF token either.
    expect((await t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(token), payload: { url: videoUrl() } })).statusCode).toBe(201);

    const listed = await t.app.inject({ method: 'GET', url: '/api/auth/tokens', headers: bearer(admin.token) });
    expect(listed.statusCode).toBe(200);
    const items = listed.json<{ items: Array<Record<string, unknown>> }>().items;
    const item = items.find((i) => i.id === apiToken.id);
    expect(item).toMatchObject({ id: apiToken.id, name: 'cli' });
    expect(item!.lastUsedAt).toEqual(expect.any(String));
    expect(listed.body).not.toContain(token);
    expect(Object.keys(item!).sort()).toEqual(['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name']);

    const revoked = await t.app.inject({ method: 'DELETE', url: `/api/auth/tokens/${apiToken.id}`, headers: bearer(admin.token) });
    expect(revoked.statusCode).toBe(204);
    expectError(await session(bearer(token)), 401, 'TOKEN_INVALID');
    expectError(await t.app.inject({ method: 'DELETE', url: `/api/auth/tokens/${apiToken.id}`, headers: bearer(admin.token) }), 404, 'NOT_FOUND');
    const after = await t.app.inject({ method: 'GET', url: '/api/auth/tokens', headers: bearer(admin.token) });
    expect(after.json<{ items: Array<{ id: string }> }>().items.map((i) => i.id)).not.toContain(apiToken.id);
  });

  it('accept an expiry in days and refuse bad bodies', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/auth/tokens', headers: bearer(admin.token), payload: { name: 'ci', expiresInDays: 7 } });
    expect(res.statusCode).toBe(201);
    const exp = Date.parse(res.json<{ apiToken: { expiresAt: string } }>().apiToken.expiresAt);
    expect(exp).toBeGreaterThan(Date.now() + 6 * 86_400_000);
    expect(exp).toBeLessThan(Date.now() + 8 * 86_400_000);
    const before = counts(t.db());
    for (const payload of [{}, { name: '' }, { name: 'x', expiresInDays: 0 }, { name: 'x', expiresInDays: '7' }, { name: 'x', scope: 'all' }]) {
      expectError(await t.app.inject({ method: 'POST', url: '/api/auth/tokens', headers: bearer(admin.token), payload }), 400, 'VALIDATION_FAILED');
    }
    expect(counts(t.db())).toEqual(before);
  });

  it('stop working when they expire', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/auth/tokens', headers: bearer(admin.token), payload: { name: 'short', expiresInDays: 1 } });
    const { token, apiToken } = res.json<{ token: string; apiToken: { id: string } }>();
    expect((await session(bearer(token))).statusCode).toBe(200);
    t.db().prepare('UPDATE api_tokens SET expires_at = ? WHERE id = ?').run(new Date(Date.now() - 1000).toISOString(), apiToken.id);
    expectError(await session(bearer(token)), 401, 'TOKEN_EXPIRED');
  });

  it('refuse unknown tokens', async () => {
    expectError(await session(bearer('dgt_not-a-real-token')), 401, 'TOKEN_INVALID');
  });

  it("cannot be revoked by another user", async () => {
    const created = await t.app.inject({ method: 'POST', url: '/api/auth/tokens', headers: bearer(admin.token), payload: { name: 'mine' } });
    const { token, apiToken } = created.json<{ token: string; apiToken: { id: string } }>();
    const eve = await createUser(t.app, admin.token, 'eve');
    expectError(await t.app.inject({ method: 'DELETE', url: `/api/auth/tokens/${apiToken.id}`, headers: bearer(eve.token) }), 404, 'NOT_FOUND');
    expect((await session(bearer(token))).statusCode).toBe(200);
    const eveList = await t.app.inject({ method: 'GET', url: '/api/auth/tokens', headers: bearer(eve.token) });
    expect(eveList.json<{ items: unknown[] }>().items).toEqual([]);
  });
});

describe('users', () => {
  it('an admin creates users; usernames are unique regardless of case', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/users',
      headers: bearer(admin.token),
      payload: { username: 'carol', password: USER_PASSWORD },
    });
    expect(res.statusCode).toBe(201);
    const user = res.json<{ user: Record<string, unknown> }>().user;
    expect(user).toMatchObject({ username: 'carol', role: 'user', disabled: false });
    expect(Object.keys(user)).not.toContain('passwordHash');
    expect(res.body).not.toContain(USER_PASSWORD);
    const hash = t.db().prepare('SELECT password_hash FROM users WHERE username = ?').pluck().get('carol') as string;
    expect(hash).toMatch(/^scrypt\$/);

    const dup = await t.app.inject({ method: 'POST', url: '/api/users', headers: bearer(admin.token), payload: { username: 'CAROL', password: USER_PASSWORD } });
    expectError(dup, 409, 'USER_EXISTS');

    const list = await t.app.inject({ method: 'GET', url: '/api/users', headers: bearer(admin.token) });
    expect(list.statusCode).toBe(200);
    expect(list.json<{ items: Array<{ username: string }> }>().items.map((u) => u.username)).toEqual(expect.arrayContaining(['admin', 'carol']));
    expect(list.body).not.toContain('scrypt$');
  });

  it('refuses bad user bodies', async () => {
    const before = counts(t.db());
    for (const payload of [
      { username: 'dave', password: 'short' },
      { username: 'has space', password: USER_PASSWORD },
      { username: 'dave', password: USER_PASSWORD, role: 'root' },
      { username: 'dave', password: USER_PASSWORD, disabled: true },
    ]) {
      expectError(await t.app.inject({ method: 'POST', url: '/api/users', headers: bearer(admin.token), payload }), 400, 'VALIDATION_FAILED');
    }
    expect(counts(t.db())).toEqual(before);
  });

  it('a user may not manage users: 403', async () => {
    const u = await createUser(t.app, admin.token, 'frank');
    const before = counts(t.db());
    expectError(await t.app.inject({ method: 'GET', url: '/api/users', headers: bearer(u.token) }), 403, 'FORBIDDEN');
    expectError(
      await t.app.inject({ method: 'POST', url: '/api/users', headers: bearer(u.token), payload: { username: 'mallory', password: USER_PASSWORD, role: 'admin' } }),
      403,
      'FORBIDDEN',
    );
    expectError(
      await t.app.inject({ method: 'PATCH', url: `/api/users/${admin.user.id}`, headers: bearer(u.token), payload: { disabled: true } }),
      403,
      'FORBIDDEN',
    );
    expect(counts(t.db())).toEqual(before);
    // Their own API token does not lift them either.
    const created = await t.app.inject({ method: 'POST', url: '/api/auth/tokens', headers: bearer(u.token), payload: { name: 'x' } });
    expectError(await t.app.inject({ method: 'GET', url: '/api/users', headers: bearer(created.json<{ token: string }>().token) }), 403, 'FORBIDDEN');
  });

  it('disabling a user stops their sessions and API tokens at once, and their logins', async () => {
    const g = await createUser(t.app, admin.token, 'grace');
    const apiToken = (
      await t.app.inject({ method: 'POST', url: '/api/auth/tokens', headers: bearer(g.token), payload: { name: 'cli' } })
    ).json<{ token: string }>().token;
    expect((await session(bearer(g.token))).statusCode).toBe(200);
    expect((await session(bearer(apiToken))).statusCode).toBe(200);

    const res = await t.app.inject({ method: 'PATCH', url: `/api/users/${g.user.id}`, headers: bearer(admin.token), payload: { disabled: true } });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ user: { disabled: boolean } }>().user.disabled).toBe(true);

    expect((await session(bearer(g.token))).statusCode).toBe(401);
    expect((await session({ cookie: g.cookie })).statusCode).toBe(401);
    expectError(await session(bearer(apiToken)), 403, 'USER_DISABLED');
    const before = counts(t.db());
    expect((await t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(apiToken), payload: { url: videoUrl() } })).statusCode).toBe(403);
    expect(counts(t.db())).toEqual(before);
    expectError(
      await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'grace', password: USER_PASSWORD } }),
      403,
      'USER_DISABLED',
    );

    // Enabled again: a new login works; the old session stays ended.
    const enabled = await t.app.inject({ method: 'PATCH', url: `/api/users/${g.user.id}`, headers: bearer(admin.token), payload: { disabled: false } });
    expect(enabled.statusCode).toBe(200);
    const again = await login(t.app, 'grace', USER_PASSWORD);
    expect((await session(bearer(again.token))).statusCode).toBe(200);
    expectError(await session(bearer(g.token)), 401, 'SESSION_REVOKED');
  });

  it('refuses to disable the last active admin, and answers 404 for an unknown user', async () => {
    expectError(
      await t.app.inject({ method: 'PATCH', url: `/api/users/${admin.user.id}`, headers: bearer(admin.token), payload: { disabled: true } }),
      409,
      'STATE_CONFLICT',
    );
    expectError(
      await t.app.inject({ method: 'PATCH', url: '/api/users/no-such-user', headers: bearer(admin.token), payload: { disabled: true } }),
      404,
      'NOT_FOUND',
    );
    expectError(
      await t.app.inject({ method: 'PATCH', url: `/api/users/${admin.user.id}`, headers: bearer(admin.token), payload: { disabled: 'yes' } }),
      400,
      'VALIDATION_FAILED',
    );
    expect((await session(bearer(admin.token))).statusCode).toBe(200);
  });

  it('a second admin created by the admin can manage users', async () => {
    const second = await createUser(t.app, admin.token, 'heidi', 'admin');
    expect((await t.app.inject({ method: 'GET', url: '/api/users', headers: bearer(second.token) })).statusCode).toBe(200);
  });
});

describe('every route but login, health, metrics and docs needs authentication', () => {
  it.each([
    ['GET', '/api/jobs'],
    ['POST', '/api/jobs'],
    ['GET', '/api/jobs/abc'],
    ['DELETE', '/api/jobs/abc'],
    ['POST', '/api/jobs/abc/cancel'],
    ['POST', '/api/jobs/abc/retry'],
    ['POST', '/api/jobs/abc/resume'],
    ['GET', '/api/jobs/abc/logs'],
    ['POST', '/api/auth/logout'],
    ['GET', '/api/auth/session'],
    ['GET', '/api/auth/tokens'],
    ['POST', '/api/auth/tokens'],
    ['DELETE', '/api/auth/tokens/abc'],
    ['GET', '/api/users'],
    ['POST', '/api/users'],
    ['PATCH', '/api/users/abc'],
  ] as const)('%s %s answers 401 without credentials', async (method, url) => {
    expectError(await t.app.inject({ method, url, payload: method === 'GET' || method === 'DELETE' ? undefined : {} }), 401, 'UNAUTHENTICATED');
  });

  it.each([
    ['GET', '/healthz'],
    ['GET', '/metrics'],
    ['GET', '/api/openapi.json'],
  ] as const)('%s %s is public', async (method, url) => {
    expect((await t.app.inject({ method, url })).statusCode).toBe(200);
  });
});

describe('login rate limits', () => {
  let limited: TestApp;
  beforeAll(async () => {
    limited = await createTestApp({ name: 'auth-limit', env: { LOGIN_MAX_PER_USERNAME: '3', LOGIN_MAX_PER_CLIENT: '6' } });
  });
  afterAll(async () => {
    await limited?.close();
  });
  const attempt = (username: string, password: string, remoteAddress: string) =>
    limited.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username, password }, remoteAddress });

  it('limits attempts per username across client addresses, with Retry-After', async () => {
    for (let i = 0; i < 3; i++) expectError(await attempt(ADMIN_USERNAME, 'wrong', `10.1.0.${i + 1}`), 401, 'INVALID_CREDENTIALS');
    const res = await attempt(ADMIN_USERNAME, 'wrong', '10.1.0.9');
    expectError(res, 429, 'RATE_LIMITED');
    const retryAfter = Number(res.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(300);
    // Even the right password waits, and the username is matched regardless of case.
    expectError(await attempt(ADMIN_USERNAME, ADMIN_PASSWORD, '10.1.0.10'), 429, 'RATE_LIMITED');
    expectError(await attempt(ADMIN_USERNAME.toUpperCase(), ADMIN_PASSWORD, '10.1.0.11'), 429, 'RATE_LIMITED');
    expect(limited.db().prepare('SELECT count(*) FROM sessions').pluck().get()).toBe(0);
  });

  it('limits attempts per client address across usernames, with Retry-After', async () => {
    const ip = '10.2.0.1';
    for (let i = 0; i < 6; i++) expectError(await attempt(`someone${i}`, 'wrong', ip), 401, 'INVALID_CREDENTIALS');
    const res = await attempt('someone-else', 'wrong', ip);
    expectError(res, 429, 'RATE_LIMITED');
    const retryAfter = Number(res.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Another address is not affected.
    expectError(await attempt('someone-else', 'wrong', '10.2.0.2'), 401, 'INVALID_CREDENTIALS');
  });
});
