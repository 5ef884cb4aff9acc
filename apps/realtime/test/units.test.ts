// The small pieces without Redis: token bucket and abuse counter, origin policy, handshake
// credentials and cookies, the token verifier, settings, the session registry, metric labels.
import { describe, expect, it } from 'vitest';
import { createMetrics } from '@dubgate/runtime/metrics';
import { createAbuseTracker, createTokenBucket } from '../src/rate-limit.js';
import { createOriginPolicy } from '../src/origins.js';
import { API_TOKEN_REFUSED_MESSAGE, AuthError, createTokenVerifier, handshakeCredential, readCookie } from '../src/auth.js';
import { loadRealtimeConfig, parseOrigins } from '../src/config.js';
import { createSessionRegistry } from '../src/session-registry.js';
import { createRealtimeMetrics } from '../src/metrics.js';
import { JWT_SECRET, makeUser, metricValue, signJwt } from './helpers.js';

describe('token bucket', () => {
  it('allows a burst, then the steady rate', () => {
    let t = 0;
    const bucket = createTokenBucket({ ratePerSecond: 10, burst: 3, now: () => t });
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
    t += 100; // one token back
    expect([bucket.take(), bucket.take()]).toEqual([true, false]);
    t += 10_000; // never more than the burst
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
  });

  it('the abuse counter trips after `max` strikes within the window, and notices are throttled', () => {
    let t = 0;
    const abuse = createAbuseTracker({ max: 3, windowMs: 1_000, noticeIntervalMs: 500, now: () => t });
    expect([abuse.strike(), abuse.strike()]).toEqual([false, false]);
    t = 1_500; // a new window
    expect([abuse.strike(), abuse.strike(), abuse.strike()]).toEqual([false, false, true]);
    expect([abuse.mayNotify(), abuse.mayNotify()]).toEqual([true, false]);
    t += 600;
    expect(abuse.mayNotify()).toBe(true);
  });
});

describe('origin policy', () => {
  const sameOnly = createOriginPolicy([]);
  it.each([
    [undefined, 'rt.example.com', true],
    ['https://rt.example.com', 'rt.example.com', true],
    ['http://localhost:3001', 'localhost:3001', true],
    ['http://LOCALHOST:3001', 'localhost:3001', true],
    ['http://[::1]:3001', '[::1]:3001', true],
    ['https://rt.example.com', 'rt.example.com:443', true],
    ['http://localhost:3000', 'localhost:3001', false],
    ['http://rt.example.com:8080', 'rt.example.com', false],
    ['https://evil.example', 'rt.example.com', false],
    ['null', 'rt.example.com', false],
    ['file://', 'rt.example.com', false],
    ['https://rt.example.com', undefined, false],
  ])('same origin only: %s for Host %s → %s', (origin, host, ok) => {
    expect(sameOnly(origin, host)).toBe(ok);
  });

  it('allows listed origins, or any with *', () => {
    const listed = createOriginPolicy(['https://app.example.com']);
    expect(listed('https://app.example.com', 'rt.example.com')).toBe(true);
    expect(listed('https://evil.example', 'rt.example.com')).toBe(false);
    expect(createOriginPolicy(['*'])('https://anything.example', 'rt.example.com')).toBe(true);
  });

  it('REALTIME_ALLOWED_ORIGINS is parsed and checked at start', () => {
    expect(parseOrigins(' https://a.example.com, http://localhost:5173 ,')).toEqual(['https://a.example.com', 'http://localhost:5173']);
    expect(parseOrigins('https://a.example.com/')).toEqual(['https://a.example.com']);
    expect(parseOrigins('*')).toEqual(['*']);
    expect(() => parseOrigins('a.example.com')).toThrow(/not an origin/);
    expect(() => parseOrigins('https://a.example.com/app')).toThrow(/not an origin/);
    expect(() => parseOrigins('ftp://a.example.com')).toThrow(/not an origin/);
  });
});

describe('settings', () => {
  it('has defaults for every REALTIME_* setting and reports all problems together', () => {
    const config = loadRealtimeConfig({ env: { REDIS_URL: 'redis://127.0.0.1:6397', JWT_SECRET }, envFile: false });
    expect(config).toMatchObject({
      REALTIME_PORT: 3001,
      REALTIME_ALLOWED_ORIGINS: [],
      REALTIME_AUTH_TIMEOUT_MS: 5000,
      REALTIME_MAX_SUBSCRIPTIONS: 500,
      REALTIME_MAX_PAYLOAD_BYTES: 16 * 1024,
      REALTIME_EVENTS_PER_SECOND: 20,
      REALTIME_EVENT_BURST: 40,
      REALTIME_RATE_LIMIT_DISCONNECT: 100,
      REALTIME_DRAIN_TIMEOUT_MS: 5000,
      REALTIME_ADAPTER_KEY: 'socket.io',
      SHUTDOWN_TIMEOUT_MS: 30000,
    });
    expect(() =>
      loadRealtimeConfig({
        env: { REDIS_URL: 'redis://x', JWT_SECRET, REALTIME_MAX_SUBSCRIPTIONS: '0', REALTIME_ADAPTER_KEY: 'a b', REALTIME_MAX_PAYLOAD_BYTES: 'lots' },
        envFile: false,
      }),
    ).toThrow(/3 problems[\s\S]*REALTIME_MAX_SUBSCRIPTIONS[\s\S]*REALTIME_MAX_PAYLOAD_BYTES[\s\S]*REALTIME_ADAPTER_KEY/);
  });
});

describe('credentials', () => {
  it('reads one cookie among several', () => {
    expect(readCookie('a=1; dubgate_session=abc.def; b=2', 'dubgate_session')).toBe('abc.def');
    expect(readCookie('dubgate_session="quoted"', 'dubgate_session')).toBe('quoted');
    expect(readCookie('x_dubgate_session=no', 'dubgate_session')).toBeUndefined();
    expect(readCookie(undefined, 'dubgate_session')).toBeUndefined();
    expect(readCookie('dubgate_session=%E0%A4%A', 'dubgate_session')).toBe('%E0%A4%A');
  });

  it('takes auth.token first, then Authorization, then the cookie', () => {
    const headers = { authorization: 'Bearer from-header', cookie: 'dubgate_session=from-cookie' };
    expect(handshakeCredential({ auth: { token: 'from-auth' }, headers })).toEqual({ kind: 'token', token: 'from-auth', source: 'auth' });
    expect(handshakeCredential({ auth: {}, headers })).toEqual({ kind: 'token', token: 'from-header', source: 'header' });
    expect(handshakeCredential({ auth: {}, headers: { cookie: headers.cookie } })).toEqual({ kind: 'token', token: 'from-cookie', source: 'cookie' });
    expect(handshakeCredential({ auth: {}, headers: {} })).toEqual({ kind: 'none' });
    expect(handshakeCredential({ auth: { token: '' }, headers: {} }).kind).toBe('invalid');
    expect(handshakeCredential({ auth: { token: ['x'] }, headers: {} }).kind).toBe('invalid');
    expect(handshakeCredential({ auth: {}, headers: { authorization: 'Token abc' } }).kind).toBe('invalid');
  });

  it('verifies session tokens as the api issues them, and nothing else', () => {
    const verify = createTokenVerifier(JWT_SECRET);
    const user = makeUser('admin');
    expect(verify(user.token)).toEqual({ userId: user.id, sessionId: user.sid, role: 'admin', expiresAt: expect.any(Number) });
    const codeOf = (token: string) => {
      try {
        verify(token);
        return 'accepted';
      } catch (err) {
        return (err as AuthError).code;
      }
    };
    const now = Math.floor(Date.now() / 1000);
    expect(codeOf(makeUser('user', { exp: now - 1 }).token)).toBe('TOKEN_EXPIRED');
    expect(codeOf(makeUser('user', { nbf: now + 600 }).token)).toBe('TOKEN_INVALID');
    expect(codeOf(signJwt({ sub: 'u', sid: 's', role: 'user', iss: 'dubgate', aud: 'dubgate', exp: now + 60 }, { alg: 'none' }))).toBe('TOKEN_INVALID');
    expect(codeOf(makeUser('user', { sub: 42 as unknown as string }).token)).toBe('TOKEN_INVALID');
    expect(codeOf('x'.repeat(5000))).toBe('TOKEN_INVALID');
    expect(() => verify('dgt_secret')).toThrow(API_TOKEN_REFUSED_MESSAGE);
  });
});

describe('session registry', () => {
  it('finds sockets by session and by user, and forgets them', () => {
    const r = createSessionRegistry<string>();
    r.add('a', 's1', 'u1');
    r.add('b', 's2', 'u1');
    r.add('c', 's3', 'u2');
    expect(r.bySession('s1')).toEqual(['a']);
    expect(r.byUser('u1').sort()).toEqual(['a', 'b']);
    r.add('a', 's4', 'u2'); // re-registering moves it
    expect(r.bySession('s1')).toEqual([]);
    expect(r.byUser('u2').sort()).toEqual(['a', 'c']);
    r.remove('a');
    r.remove('never-added');
    expect(r.size).toBe(2);
    expect(r.all().sort()).toEqual(['b', 'c']);
  });
});

describe('delivery metrics', () => {
  it('keeps the event label set closed and skips lag without a valid timestamp', async () => {
    const metrics = createMetrics({ service: 'realtime', defaultMetrics: false });
    const rt = createRealtimeMetrics(metrics, () => 0);
    rt.delivered('progress', 2, { timestamp: new Date(Date.now() - 100).toISOString() });
    rt.delivered('made_up_event', 1, {});
    rt.delivered({ not: 'a name' }, 1, null);
    rt.delivered('log', 1, { timestamp: 'yesterday' });
    rt.delivered('log', 0, { timestamp: new Date().toISOString() });
    const text = (await metrics.render()).body;
    expect(metricValue(text, 'dubgate_realtime_events_delivered_total', { event: 'progress' })).toBe(2);
    expect(metricValue(text, 'dubgate_realtime_events_delivered_total', { event: 'other' })).toBe(2);
    expect(metricValue(text, 'dubgate_realtime_events_delivered_total', { event: 'log' })).toBe(1);
    expect(metricValue(text, 'dubgate_realtime_event_lag_seconds_count')).toBe(1);
    expect(text).not.toContain('made_up_event');
  });
});
