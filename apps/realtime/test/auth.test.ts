// Who may connect: session JWTs in the handshake (auth.token, Bearer header, cookie) or through
// authenticate(token); forged, expired, misaddressed and API tokens refused; revoked sessions and
// disabled users refused at the door and disconnected while connected; expiry; allowed origins.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { rooms, type AuthenticateAck, type SubscriptionAck, type WsError } from '@dubgate/contracts/ws';
import { SESSION_REVOKED_CHANNEL, USER_DISABLED_CHANNEL } from '@dubgate/contracts/auth';
import {
  connectError,
  connected,
  createTestEnv,
  disconnected,
  makeUser,
  metricValue,
  metricsOf,
  nextEvent,
  WAIT_MS,
  rand,
  record,
  redisUrl,
  request,
  signJwt,
  sleep,
  waitFor,
  type TestEnv,
  type TestNode,
} from './helpers.js';

let env: TestEnv;
let node: TestNode;

beforeEach(async () => {
  env = createTestEnv('auth');
  node = await env.startNode({ REALTIME_AUTH_TIMEOUT_MS: '400' });
});
afterEach(async () => {
  await env.cleanup();
});

const now = () => Math.floor(Date.now() / 1000);

describe('handshake authentication', () => {
  it('a valid token in auth.token connects and joins the user room', async () => {
    const user = makeUser();
    const socket = env.connect(node.url, { auth: { token: user.token } });
    await connected(socket);
    const [remote] = await node.server.io.in(rooms.user(user.id)).fetchSockets();
    expect(remote?.id).toBe(socket.id);
    expect(remote?.rooms.has(rooms.admins)).toBe(false);
    expect(remote?.data).toEqual({ userId: user.id, role: 'user' });

    // The relay's notifications for this user reach the socket.
    env.emitter.to(rooms.user(user.id)).emit('notification', { type: 'job_done', title: 'Done', message: 'Your job is complete', severity: 'info' });
    expect(await nextEvent(socket, 'notification')).toEqual({ type: 'job_done', title: 'Done', message: 'Your job is complete', severity: 'info' });
  });

  it('admins also join the admins room', async () => {
    const admin = makeUser('admin');
    const socket = env.connect(node.url, { auth: { token: admin.token } });
    await connected(socket);
    const inAdmins = await node.server.io.in(rooms.admins).fetchSockets();
    expect(inAdmins.map((s) => s.id)).toEqual([socket.id]);
  });

  it('accepts the token as Authorization: Bearer and as the dubgate_session cookie (also over long-polling)', async () => {
    const a = makeUser();
    const viaHeader = env.connect(node.url, { extraHeaders: { authorization: `Bearer ${a.token}` } });
    await connected(viaHeader);
    const b = makeUser();
    const viaCookie = env.connect(node.url, { transports: ['polling'], extraHeaders: { cookie: `theme=dark; dubgate_session=${b.token}` } });
    await connected(viaCookie);
    expect((await node.server.io.in(rooms.user(a.id)).fetchSockets()).length).toBe(1);
    expect((await node.server.io.in(rooms.user(b.id)).fetchSockets()).length).toBe(1);
  });

  it.each([
    ['expired', () => makeUser('user', { exp: now() - 10 }).token, 'TOKEN_EXPIRED'],
    ['signed with another key', () => makeUser('user', {}, 'another-secret-0123456789abcdef0123456789').token, 'TOKEN_INVALID'],
    ['alg none', () => signJwt({ sub: 'u1', sid: 's1', role: 'admin', iss: 'dubgate', aud: 'dubgate', exp: now() + 600 }, { alg: 'none' }), 'TOKEN_INVALID'],
    ['HS512 with the right key', () => signJwt({ sub: 'u1', sid: 's1', role: 'user', iss: 'dubgate', aud: 'dubgate', exp: now() + 600 }, { alg: 'HS512' }), 'TOKEN_INVALID'],
    ['another issuer', () => makeUser('user', { iss: 'someone-else' }).token, 'TOKEN_INVALID'],
    ['another audience', () => makeUser('user', { aud: 'someone-else' }).token, 'TOKEN_INVALID'],
    ['without exp', () => makeUser('user', { exp: undefined }).token, 'TOKEN_INVALID'],
    ['without sid', () => makeUser('user', { sid: undefined }).token, 'TOKEN_INVALID'],
    ['with an unknown role', () => makeUser('user', { role: 'root' }).token, 'TOKEN_INVALID'],
    ['garbage', () => 'not.a.jwt', 'TOKEN_INVALID'],
    ['not a string', () => 42 as unknown as string, 'TOKEN_INVALID'],
  ])('refuses a token that is %s', async (_name, token, code) => {
    const socket = env.connect(node.url, { auth: { token: token() } });
    const err = await connectError(socket);
    expect(err.data?.code).toBe(code);
    expect(err.data?.message).toEqual(expect.any(String));
    expect(metricValue(await metricsOf(node), 'dubgate_realtime_auth_failures_total', { code })).toBeGreaterThanOrEqual(1);
    expect(node.server.io.of('/').sockets.size).toBe(0);
  });

  it('refuses a malformed Authorization header', async () => {
    const socket = env.connect(node.url, { extraHeaders: { authorization: 'Basic YWRtaW46YWRtaW4=' } });
    expect((await connectError(socket)).data?.code).toBe('TOKEN_INVALID');
  });

  it('refuses API tokens with TOKEN_INVALID and says why', async () => {
    const socket = env.connect(node.url, { auth: { token: `dgt_${'a'.repeat(43)}` } });
    const err = await connectError(socket);
    expect(err.data?.code).toBe('TOKEN_INVALID');
    expect(err.data?.message).toMatch(/API tokens.*not accepted on the WebSocket/);
  });

  it('refuses a revoked session and a disabled user (the keys the api writes)', async () => {
    const loggedOut = makeUser();
    await env.redis.set(`${env.gatewayKeyPrefix}:session-revoked:${loggedOut.sid}`, '1', 'PX', 60_000);
    expect((await connectError(env.connect(node.url, { auth: { token: loggedOut.token } }))).data?.code).toBe('SESSION_REVOKED');

    const disabled = makeUser();
    await env.redis.set(`${env.gatewayKeyPrefix}:user-disabled:${disabled.id}`, '1');
    expect((await connectError(env.connect(node.url, { auth: { token: disabled.token } }))).data?.code).toBe('USER_DISABLED');
    const text = await metricsOf(node);
    expect(metricValue(text, 'dubgate_realtime_auth_failures_total', { code: 'SESSION_REVOKED' })).toBe(1);
    expect(metricValue(text, 'dubgate_realtime_auth_failures_total', { code: 'USER_DISABLED' })).toBe(1);
  });
});

describe('unauthenticated sockets', () => {
  it('can do nothing but authenticate, and are disconnected after the timeout', async () => {
    const socket = env.connect(node.url);
    await connected(socket);
    const errors: WsError[] = [];
    socket.on('error', (e) => errors.push(e));

    const ack = await request<SubscriptionAck>(socket, 'subscribe', ['job-1']);
    expect(ack).toEqual({ ok: false, results: [], error: { code: 'UNAUTHENTICATED', message: expect.any(String) } });
    socket.emit('unsubscribe', ['job-1']);
    await waitFor(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'UNAUTHENTICATED' });

    const started = Date.now();
    const reason = await disconnected(socket, WAIT_MS);
    expect(reason).toBe('io server disconnect');
    // The 400 ms timer did it (the reason and the message say so), not a ping timeout (25 s + 20 s):
    // a bound below that, not a race against the machine's load.
    expect(Date.now() - started).toBeLessThan(WAIT_MS);
    expect(errors.at(-1)).toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringMatching(/within 400 ms/) });
    const text = await metricsOf(node);
    expect(metricValue(text, 'dubgate_realtime_events_refused_total', { reason: 'unauthenticated' })).toBe(2);
    expect(metricValue(text, 'dubgate_realtime_auth_failures_total', { code: 'UNAUTHENTICATED' })).toBe(1);
  });

  it('authenticate(token, ack) authenticates the socket, which then joins its rooms and may subscribe', async () => {
    // A timeout the authentication surely beats on a loaded machine (400 ms might not).
    const patient = await env.startNode({ REALTIME_AUTH_TIMEOUT_MS: '1500' });
    const user = makeUser();
    await env.setOwner('job-a', user.id);
    const socket = env.connect(patient.url);
    await connected(socket);
    const ack = await request<AuthenticateAck>(socket, 'authenticate', user.token);
    expect(ack).toEqual({ ok: true, userId: user.id });
    expect((await patient.server.io.in(rooms.user(user.id)).fetchSockets()).length).toBe(1);
    expect(await request<SubscriptionAck>(socket, 'subscribe', ['job-a'])).toEqual({ ok: true, results: [{ jobId: 'job-a', accepted: true }] });
    // Past the unauthenticated timeout, still connected (proving that nothing happens: no event to wait for).
    await sleep(1_700);
    expect(socket.connected).toBe(true);
    // Once is enough.
    expect(await request<AuthenticateAck>(socket, 'authenticate', user.token)).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  });

  it('authenticate refuses bad tokens with a code, and disconnects after three failures', async () => {
    // A timeout that cannot fire first on a loaded machine: the disconnect must come from the failures.
    const patient = await env.startNode({ REALTIME_AUTH_TIMEOUT_MS: '5000' });
    const socket = env.connect(patient.url);
    await connected(socket);
    expect(await request<AuthenticateAck>(socket, 'authenticate', makeUser('user', { exp: now() - 5 }).token)).toEqual({
      ok: false,
      error: { code: 'TOKEN_EXPIRED', message: expect.any(String) },
    });
    expect(await request<AuthenticateAck>(socket, 'authenticate', { token: 'x' })).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
    expect(await request<AuthenticateAck>(socket, 'authenticate', 'dgt_abc')).toMatchObject({ ok: false, error: { code: 'TOKEN_INVALID' } });
    const gone = disconnected(socket);
    expect(await request<AuthenticateAck>(socket, 'authenticate', 'garbage')).toMatchObject({ ok: false, error: { code: 'TOKEN_INVALID' } });
    expect(await gone).toBe('io server disconnect');
  });
});

describe('revocation and expiry of live sockets', () => {
  it('a message on the session-revoked channel disconnects exactly that session, on every node', async () => {
    const other = await env.startNode();
    const user = makeUser();
    const secondSession = makeUser('user', { sub: user.id });
    const a = env.connect(node.url, { auth: { token: user.token } });
    const b = env.connect(other.url, { auth: { token: user.token } });
    const c = env.connect(node.url, { auth: { token: secondSession.token } });
    await Promise.all([connected(a), connected(b), connected(c)]);
    const errorsA = record(a);

    const goneA = disconnected(a);
    const goneB = disconnected(b);
    await env.redis.publish(SESSION_REVOKED_CHANNEL, user.sid);
    expect(await goneA).toBe('io server disconnect');
    expect(await goneB).toBe('io server disconnect');
    expect(errorsA).toContainEqual({ event: 'error', payload: { code: 'SESSION_REVOKED', message: expect.any(String) } });
    await sleep(100); // proves that c is not disconnected: nothing to wait for
    expect(c.connected).toBe(true);
  });

  it('a message on the user-disabled channel disconnects every socket of that user', async () => {
    const user = makeUser();
    const s1 = makeUser('user', { sub: user.id });
    const a = env.connect(node.url, { auth: { token: user.token } });
    const b = env.connect(node.url, { auth: { token: s1.token } });
    const bystander = env.connect(node.url, { auth: { token: makeUser().token } });
    await Promise.all([connected(a), connected(b), connected(bystander)]);
    const gone = Promise.all([disconnected(a), disconnected(b)]);
    const errs = record(b);
    await env.redis.publish(USER_DISABLED_CHANNEL, user.id);
    expect(await gone).toEqual(['io server disconnect', 'io server disconnect']);
    expect(errs).toContainEqual({ event: 'error', payload: { code: 'USER_DISABLED', message: expect.any(String) } });
    await sleep(100); // proves that the bystander is not disconnected: nothing to wait for
    expect(bystander.connected).toBe(true);
  });

  it('a revocation published while the keys are being read is not missed', async () => {
    // Many handshakes racing the revocation: none of them may end up connected.
    const user = makeUser();
    const sockets = Array.from({ length: 20 }, () => env.connect(node.url, { auth: { token: user.token } }));
    const outcomes = sockets.map((s) => connected(s).then(() => 'connected', () => 'refused'));
    await sleep(5);
    await env.redis.set(`${env.gatewayKeyPrefix}:session-revoked:${user.sid}`, '1', 'PX', 60_000);
    await env.redis.publish(SESSION_REVOKED_CHANNEL, user.sid);
    await Promise.all(outcomes);
    await waitFor(() => sockets.every((s) => !s.connected), WAIT_MS, 'every socket of the revoked session gone');
  });

  it('forgets sockets that leave, including those that leave in the middle of their handshake', async () => {
    // Lookups that take a while, so clients can leave while their keys are being read.
    const slow = new Redis(redisUrl(), { maxRetriesPerRequest: 1 });
    const mget = slow.mget.bind(slow) as (...keys: string[]) => Promise<Array<string | null>>;
    (slow as unknown as { mget: typeof mget }).mget = async (...keys: string[]) => {
      await sleep(150);
      return mget(...keys);
    };
    try {
      const slowNode = await env.startNode({}, { producer: slow });
      const user = makeUser();
      const quitters = Array.from({ length: 10 }, () => env.connect(slowNode.url, { auth: { token: user.token } }));
      await waitFor(async () => metricValue(await metricsOf(slowNode), 'dubgate_realtime_authenticated_sockets') === 10, WAIT_MS, 'ten handshakes in progress');
      for (const s of quitters) s.disconnect();
      const stayer = env.connect(slowNode.url, { auth: { token: user.token } });
      await connected(stayer);
      // The quitters are forgotten when their lookups come back: wait for that, not a fixed time.
      const tracked = async () => {
        const text = await metricsOf(slowNode);
        return [metricValue(text, 'dubgate_realtime_authenticated_sockets'), metricValue(text, 'dubgate_realtime_connected_sockets')];
      };
      await waitFor(async () => (await tracked()).every((n) => n === 1), WAIT_MS, 'only the stayer tracked');
      expect(metricValue(await metricsOf(slowNode), 'dubgate_realtime_authenticated_sockets')).toBe(1);
      expect(metricValue(await metricsOf(slowNode), 'dubgate_realtime_connected_sockets')).toBe(1);
      stayer.disconnect();
      await waitFor(async () => metricValue(await metricsOf(slowNode), 'dubgate_realtime_authenticated_sockets') === 0, WAIT_MS, 'no tracked socket');
      await slowNode.close();
    } finally {
      slow.disconnect();
    }
  });

  it('a socket is disconnected when its token expires', async () => {
    // The node reads the time from the test: the token expires when the test says so, however long
    // the handshake took (a real 2 s token could expire during a slow one).
    let ahead = 0;
    const clocked = await env.startNode({}, undefined, { clock: () => Date.now() + ahead });
    const user = makeUser('user', { exp: now() + 60 });
    const socket = env.connect(clocked.url, { auth: { token: user.token } });
    await connected(socket);
    const got = record(socket);
    const gone = disconnected(socket);
    ahead = 120_000; // past exp: the next expiry sweep (once a second) disconnects it
    const reason = await gone;
    expect(reason).toBe('io server disconnect');
    expect(got).toContainEqual({ event: 'error', payload: { code: 'TOKEN_EXPIRED', message: expect.any(String) } });
  });
});

describe('origins', () => {
  it('allows clients without Origin and same-origin pages, refuses other origins by default', async () => {
    const user = makeUser();
    await connected(env.connect(node.url, { auth: { token: user.token } }));
    await connected(env.connect(node.url, { auth: { token: user.token }, extraHeaders: { origin: `http://127.0.0.1:${node.port}` } }));
    const evil = env.connect(node.url, { auth: { token: user.token }, extraHeaders: { origin: 'https://evil.example' } });
    await connectError(evil);
    expect(metricValue(await metricsOf(node), 'dubgate_realtime_events_refused_total', { reason: 'origin_not_allowed' })).toBe(1);
  });

  it('allows the origins listed in REALTIME_ALLOWED_ORIGINS, and only those', async () => {
    const listed = await env.startNode({ REALTIME_ALLOWED_ORIGINS: 'https://app.example.com, https://admin.example.com' });
    const user = makeUser();
    await connected(env.connect(listed.url, { auth: { token: user.token }, extraHeaders: { origin: 'https://app.example.com' } }));
    await connected(
      env.connect(listed.url, { transports: ['polling'], auth: { token: user.token }, extraHeaders: { origin: 'https://admin.example.com' } }),
    );
    await connectError(env.connect(listed.url, { auth: { token: user.token }, extraHeaders: { origin: 'https://evil.example' } }));
    await connectError(env.connect(listed.url, { auth: { token: user.token }, extraHeaders: { origin: 'null' } }));
  });
});

describe('health and metrics', () => {
  it('/healthz reports Redis, the adapter and the control subscriber; /metrics has the realtime series', async () => {
    const health = await fetch(`${node.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({
      status: 'ok',
      uptime: expect.any(Number),
      dependencies: { redis: 'up', adapter: 'up', subscriber: 'up' },
      timestamp: expect.any(String),
    });
    await connected(env.connect(node.url, { auth: { token: makeUser().token } }));
    const res = await fetch(`${node.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    for (const name of [
      'dubgate_realtime_connected_sockets',
      'dubgate_realtime_events_delivered_total',
      'dubgate_realtime_event_lag_seconds',
      'dubgate_realtime_events_refused_total',
      'dubgate_realtime_auth_failures_total',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(metricValue(text, 'dubgate_realtime_connected_sockets')).toBe(1);
    expect(text).toContain('service="realtime"');

    const missing = await fetch(`${node.url}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'ROUTE_NOT_FOUND' } });
  });

  it('/healthz answers 503 when Redis is unreachable for lookups', async () => {
    node.server.redis.producer.disconnect();
    const health = await fetch(`${node.url}/healthz`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { dependencies: Record<string, string> }).dependencies.redis).toBe('down');
    // With lookups down, a handshake fails closed.
    const socket = env.connect(node.url, { auth: { token: makeUser().token } });
    expect((await connectError(socket)).data?.code).toBe('SERVICE_UNAVAILABLE');
    void rand;
  });
});
