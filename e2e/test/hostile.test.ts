/**
 * Hostile input against the running SYSTEM (built processes, not in-process apps):
 * property-based fuzzing of every REST route of /api/openapi.json, of the events:* Pub/Sub
 * channels and of Socket.IO client events; broken object level authorization, admin routes
 * with a user token, forged/expired/revoked tokens, CSRF with cookie auth, login brute force.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { io } from 'socket.io-client';
import { openDatabase } from '@dubgate/db/open';
import { startSystem, waitFor, type System } from './system.js';

const SECRET = 'e2e-secret-0123456789-0123456789-0123456789';
let system: System;
let admin: string;
let alice: { token: string; cookie: string; csrf: string; id: string };
let bob: { token: string; id: string };
let aliceSpare: string; // a second session of alice, revoked in the token test
let aliceJob: string;
let fuzzJob: string;

async function login(username: string, password: string) {
  const res = await fetch(`${system.apiUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
  const body = (await res.json()) as { token: string; csrfToken: string; user: { id: string } };
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0]!;
  return { status: res.status, token: body.token, csrf: body.csrfToken, cookie, id: body.user?.id };
}

function rowCounts() {
  const db = openDatabase(system.dbPath, { readonly: true });
  try {
    const c = (t: string) => (db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
    return { jobs: c('jobs'), users: c('users'), api_tokens: c('api_tokens') };
  } finally {
    db.close();
  }
}

async function healthy() {
  const urls = [`${system.apiUrl}/healthz`, `${system.realtimeUrl}/healthz`, `http://127.0.0.1:${system.ports.relay}/healthz`];
  for (const u of urls) expect((await fetch(u)).status, u).toBe(200);
}

let lastMetrics = '';
async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  lastMetrics = text;
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name) && !line.startsWith('#')) sum += Number(line.split(' ').at(-1));
  return sum;
}

function b64url(v: unknown) {
  return Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
}
function jwt(header: Record<string, unknown>, payload: Record<string, unknown>, key: string | null) {
  const head = `${b64url(header)}.${b64url(payload)}`;
  return `${head}.${key === null ? '' : createHmac('sha256', key).update(head).digest('base64url')}`;
}

beforeAll(async () => {
  system = await startSystem({ apps: ['api', 'relay', 'realtime'] });
  admin = await system.token();
  for (const u of ['alice', 'bob']) expect((await system.api('POST', '/api/users', { username: u, password: `${u}-password-0123456789` }, admin)).status).toBe(201);
  const a = await login('alice', 'alice-password-0123456789');
  alice = { token: a.token, cookie: a.cookie, csrf: a.csrf, id: a.id };
  aliceSpare = (await login('alice', 'alice-password-0123456789')).token;
  const b = await login('bob', 'bob-password-0123456789');
  bob = { token: b.token, id: b.id };
  const r = await system.api<{ job: { id: string } }>('POST', '/api/jobs', { url: 'http://127.0.0.1:8080/alice.mp4' }, alice.token);
  expect(r.status).toBe(201);
  aliceJob = r.body.job.id;
  // A second job of alice's for the fuzzer's "real id" case: the fuzzer may legitimately delete it,
  // while aliceJob must survive for the authorization tests below.
  const decoy = await system.api<{ job: { id: string } }>('POST', '/api/jobs', { url: 'http://127.0.0.1:8080/decoy.mp4' }, alice.token);
  expect(decoy.status).toBe(201);
  fuzzJob = decoy.body.job.id;
}, 300_000); // starting the system on a loaded machine: a deadline, not an expectation

afterAll(async () => {
  await system?.stop();
});

describe('REST fuzzing from the OpenAPI document', () => {
  it('never a 5xx, never a crash, never a row written by a rejected request', async () => {
    const doc = (await system.api<{ paths: Record<string, Record<string, unknown>> }>('GET', '/api/openapi.json')).body;
    const routes: Array<{ method: string; path: string }> = [];
    for (const [path, ops] of Object.entries(doc.paths)) for (const method of Object.keys(ops)) if (['get', 'post', 'put', 'patch', 'delete'].includes(method)) routes.push({ method: method.toUpperCase(), path });
    expect(routes.length).toBeGreaterThan(10);
    const before = rowCounts();
    let created = 0;
    let deleted = 0;
    const fiveXX: string[] = [];
    const idArb = fc.oneof(fc.string({ maxLength: 80 }), fc.uuid(), fc.constantFrom(fuzzJob, '..', '%00', '1e309', '__proto__', 'x'.repeat(500)));
    const bodyArb = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 300 }),
      fc.constantFrom('{', '{"url":', '{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"x":1}}}', '[]', 'null', '{"url":"javascript:alert(1)"}', '{"url":"file:///etc/passwd"}', '{"username":"","password":""}'),
      fc.record({ url: fc.oneof(fc.webUrl(), fc.string()), requestedDubbing: fc.anything(), targetLang: fc.string(), outputContainer: fc.string(), formatPreset: fc.string() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
    );
    const queryArb = fc.dictionary(fc.constantFrom('limit', 'after', 'cursor', 'status', 'state', 'q', '__proto__', 'owner', fc.string({ maxLength: 5 }) as never), fc.oneof(fc.string({ maxLength: 20 }), fc.integer().map(String), fc.constant('-1'), fc.constant('1e999')), { maxKeys: 4 });
    const authArb = fc.constantFrom<'alice' | 'none' | 'garbage' | 'admin'>('alice', 'none', 'garbage', 'admin');
    const ctypeArb = fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x', undefined);

    for (const route of routes) {
      if (route.path === '/api/auth/login') continue; // fuzzed below with few runs: login attempts are rate limited
      await fc.assert(
        fc.asyncProperty(idArb, bodyArb, queryArb, authArb, ctypeArb, async (id, body, query, auth, ctype) => {
          // logout and token deletion with a real session would end the sessions the fuzz uses
          if (auth !== 'none' && auth !== 'garbage' && (route.path === '/api/auth/logout')) auth = 'garbage';
          const path = route.path.replace(/\{[^}]+\}|:[A-Za-z]+/g, encodeURIComponent(id));
          const qs = new URLSearchParams(query as Record<string, string>).toString();
          const headers: Record<string, string> = {};
          if (ctype) headers['content-type'] = ctype;
          if (auth === 'alice') headers.authorization = `Bearer ${alice.token}`;
          if (auth === 'admin') headers.authorization = `Bearer ${admin}`;
          if (auth === 'garbage') headers.authorization = `Bearer ${id}`;
          const hasBody = route.method !== 'GET' && route.method !== 'DELETE';
          const res = await fetch(`${system.apiUrl}${path}${qs ? `?${qs}` : ''}`, { method: route.method, headers, ...(hasBody ? { body } : {}) });
          await res.arrayBuffer();
          if (res.status >= 500) fiveXX.push(`${route.method} ${path}?${qs} ${res.status} ${body.slice(0, 100)}`);
          if (res.status === 201) created++;
          if (route.method === 'DELETE' && route.path.startsWith('/api/jobs') && res.status === 204) deleted++;
          return res.status < 500;
        }),
        { numRuns: 25 },
      ).catch(() => undefined);
    }
    // login: a few malformed bodies only
    await fc.assert(
      fc.asyncProperty(bodyArb, async (body) => {
        const res = await fetch(`${system.apiUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        await res.arrayBuffer();
        if (res.status >= 500) fiveXX.push(`POST /api/auth/login ${res.status} ${body.slice(0, 100)}`);
        return res.status < 500;
      }),
      { numRuns: 6 },
    ).catch(() => undefined);

    expect(fiveXX).toEqual([]);
    await healthy();
    const after = rowCounts();
    // Only accepted requests changed rows: each 201 created one job, user or token; each 204 on a
    // job deleted one (the decoy job, when the fuzzer drew its real id with a token that may).
    expect(after.jobs + after.users + after.api_tokens - (before.jobs + before.users + before.api_tokens)).toBe(created - deleted);
  });
});

describe('Pub/Sub and Socket.IO fuzzing', () => {
  it('malformed, oversized, deeply nested and __proto__ messages on events:* are refused and counted', async () => {
    const relayUrl = `http://127.0.0.1:${system.ports.relay}`;
    const refusedBefore = await metric(relayUrl, 'dubgate_relay_messages_refused_total');
    const pub = new Redis(system.redisUrl);
    const deep = '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000);
    const fixed = [
      'not json',
      deep,
      JSON.stringify({ jobId: aliceJob, type: 'progress', timestamp: Date.now(), payload: { blob: 'x'.repeat(3 * 1024 * 1024) } }),
      `{"__proto__":{"polluted":true},"jobId":"${aliceJob}","type":"state","timestamp":1,"payload":{}}`,
      `{"constructor":{"prototype":{"polluted":true}},"jobId":"${aliceJob}","type":"log","timestamp":1,"payload":{"message":1}}`,
      JSON.stringify({ jobId: '../../etc', type: 'error', timestamp: 'yesterday', payload: null }),
      '',
      'null',
      '[]',
    ];
    let sent = 0;
    for (const ch of ['events:progress', 'events:state', 'events:log', 'events:error']) {
      for (const m of fixed) {
        await pub.publish(ch, m);
        sent++;
      }
    }
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('events:progress', 'events:state', 'events:log', 'events:error'), fc.oneof(fc.string(), fc.jsonValue().map((v) => JSON.stringify(v)), fc.record({ jobId: fc.oneof(fc.string(), fc.constant(aliceJob)), type: fc.string(), timestamp: fc.anything(), payload: fc.anything() }).map((v) => JSON.stringify(v) ?? '')), async (ch, m) => {
        await pub.publish(ch, m);
        sent++;
        return true;
      }),
      { numRuns: 150 },
    );
    pub.disconnect();
    await waitFor('the relay to count refusals', async () => (await metric(relayUrl, 'dubgate_relay_messages_refused_total')) > refusedBefore, 60_000, 200).catch((e: Error) => {
      throw new Error(`${e.message}\n${lastMetrics.slice(0, 3000)}`);
    });
    await healthy();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('random Socket.IO events and arguments: no crash, refusals counted, nothing leaks', async () => {
    const refusedBefore = await metric(system.realtimeUrl, 'dubgate_realtime_events_refused_total');
    const s = await system.socket(bob.token);
    const received: unknown[] = [];
    s.onAny((ev, ...args) => ev !== 'error' && received.push([ev, args])); // 'error' echoes the id asked for (JOB_NOT_FOUND: not an existence oracle)
    const nested = JSON.parse('{"a":'.repeat(500) + '1' + '}'.repeat(500)) as unknown;
    const fixed: Array<[string, unknown[]]> = [
      ['subscribe', [aliceJob]],
      ['subscribe', [[aliceJob]]],
      ['subscribe', [{ jobIds: [aliceJob] }]],
      ['subscribe', [nested]],
      ['subscribe', [JSON.parse('{"__proto__":{"admin":true}}')]],
      ['subscribe', ['x'.repeat(200_000)]],
      ['unsubscribe', [null]],
      ['__proto__', [1]],
      ['constructor', [{}]],
    ];
    for (const [ev, args] of fixed) s.emit(ev, ...args);
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('subscribe', 'unsubscribe', 'disconnecting', 'error')), fc.array(fc.anything({ maxDepth: 3 }), { maxLength: 3 }), async (ev, args) => {
        if (['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener'].includes(ev)) return true;
        s.emit(ev, ...args);
        return true;
      }),
      { numRuns: 150 },
    );
    // With an ack: a subscription to someone else's job is refused.
    const socket2 = await system.socket(bob.token);
    const ack = (await socket2.timeout(5_000).emitWithAck('subscribe', [aliceJob])) as { results: Array<{ accepted: boolean }> };
    expect(ack.results[0]!.accepted).toBe(false);
    // The node counts what it refused as it handles the events: wait for the count (it also
    // shows the events were handled before the leak check below).
    await waitFor('the realtime node to count refusals', async () => (await metric(system.realtimeUrl, 'dubgate_realtime_events_refused_total')) > refusedBefore, 60_000, 200).catch(() => undefined);
    await healthy();
    expect(await metric(system.realtimeUrl, 'dubgate_realtime_events_refused_total'), lastMetrics.split('\n').filter((l) => l.includes('refused')).join('\n')).toBeGreaterThan(refusedBefore);
    expect(JSON.stringify(received)).not.toContain(aliceJob);
  });
});

describe('auth attacks against the running system', () => {
  it('broken object level authorization: bob touches nothing of alice on any job route or subscription', async () => {
    const calls: Array<[string, string, unknown?]> = [
      ['GET', `/api/jobs/${aliceJob}`],
      ['GET', `/api/jobs/${aliceJob}/logs`],
      ['POST', `/api/jobs/${aliceJob}/cancel`],
      ['POST', `/api/jobs/${aliceJob}/retry`],
      ['POST', `/api/jobs/${aliceJob}/resume`],
      ['DELETE', `/api/jobs/${aliceJob}`],
    ];
    for (const [m, p, b] of calls) {
      const r = await system.api(m, p, b, bob.token);
      expect([403, 404], `${m} ${p}`).toContain(r.status);
    }
    const list = await system.api<{ items: Array<{ id: string }> }>('GET', '/api/jobs', undefined, bob.token);
    expect(list.status).toBe(200);
    expect(list.body.items.map((j) => j.id)).not.toContain(aliceJob);
    expect((await system.api<{ job: { status: string } }>('GET', `/api/jobs/${aliceJob}`, undefined, alice.token)).body.job.status).toBe('QUEUED');
  });

  it('admin routes refuse a user token', async () => {
    expect((await system.api('GET', '/api/users', undefined, alice.token)).status).toBe(403);
    expect((await system.api('POST', '/api/users', { username: 'mallory', password: 'mallory-password-0123' }, alice.token)).status).toBe(403);
    expect((await system.api('PATCH', `/api/users/${bob.id}`, { disabled: true }, alice.token)).status).toBe(403);
  });

  it('forged, expired, revoked and mis-addressed tokens are refused by the api and the realtime node', async () => {
    const claims = JSON.parse(Buffer.from(alice.token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    const now = Math.floor(Date.now() / 1000);
    const bad = {
      algNone: jwt({ alg: 'none', typ: 'JWT' }, { ...claims, role: 'admin' }, null),
      wrongKey: jwt({ alg: 'HS256', typ: 'JWT' }, claims, 'not-the-secret'),
      expired: jwt({ alg: 'HS256', typ: 'JWT' }, { ...claims, iat: now - 7200, exp: now - 3600 }, SECRET),
      wrongAud: jwt({ alg: 'HS256', typ: 'JWT' }, { ...claims, aud: 'someone-else' }, SECRET),
      wrongIss: jwt({ alg: 'HS256', typ: 'JWT' }, { ...claims, iss: 'someone-else' }, SECRET),
      revoked: aliceSpare,
    };
    // sanity: a correctly signed copy of the claims is accepted (so the refusals are for the reason tested)
    expect((await system.api('GET', '/api/jobs', undefined, jwt({ alg: 'HS256', typ: 'JWT' }, claims, SECRET))).status).toBe(200);
    expect((await system.api('GET', '/api/jobs', undefined, aliceSpare)).status).toBe(200);
    expect([200, 204]).toContain((await system.api('POST', '/api/auth/logout', undefined, aliceSpare)).status);
    for (const [name, tok] of Object.entries(bad)) {
      expect((await system.api('GET', '/api/jobs', undefined, tok)).status, name).toBe(401);
      const s = io(system.realtimeUrl, { transports: ['websocket'], auth: { token: tok }, forceNew: true, reconnection: false });
      const outcome = await new Promise<string>((resolve) => {
        s.once('connect_error', () => resolve('refused'));
        s.once('disconnect', () => resolve('refused'));
        s.once('connect', () => setTimeout(() => resolve(s.connected ? 'connected' : 'refused'), 500));
        setTimeout(() => resolve('timeout'), 30_000); // a deadline only: a refusal comes at once
      });
      s.close();
      expect(outcome, `realtime with ${name}`).toBe('refused');
    }
  });

  it('CSRF: every state-changing route with cookie auth needs the x-csrf-token header', async () => {
    const routes: Array<[string, string, unknown]> = [
      ['POST', '/api/jobs', { url: 'http://127.0.0.1:8080/csrf.mp4' }],
      ['POST', `/api/jobs/${aliceJob}/cancel`, undefined],
      ['POST', `/api/jobs/${aliceJob}/retry`, undefined],
      ['POST', `/api/jobs/${aliceJob}/resume`, undefined],
      ['DELETE', `/api/jobs/${aliceJob}`, undefined],
      ['POST', '/api/auth/tokens', { name: 'csrf' }],
      ['DELETE', '/api/auth/tokens/some-id', undefined],
      ['POST', '/api/auth/logout', undefined],
    ];
    const before = rowCounts();
    for (const [m, p, b] of routes) {
      for (const csrf of [undefined, 'wrong-token']) {
        const res = await fetch(`${system.apiUrl}${p}`, {
          method: m,
          headers: { cookie: alice.cookie, ...(b !== undefined ? { 'content-type': 'application/json' } : {}), ...(csrf ? { 'x-csrf-token': csrf } : {}) },
          ...(b !== undefined ? { body: JSON.stringify(b) } : {}),
        });
        expect(res.status, `${m} ${p} csrf=${csrf}`).toBe(403);
      }
    }
    expect(rowCounts()).toEqual(before);
    expect((await system.api<{ job: { status: string } }>('GET', `/api/jobs/${aliceJob}`, undefined, alice.token)).body.job.status).toBe('QUEUED');
    // with the header, the cookie session works
    const ok = await fetch(`${system.apiUrl}/api/jobs`, { method: 'POST', headers: { cookie: alice.cookie, 'content-type': 'application/json', 'x-csrf-token': alice.csrf }, body: JSON.stringify({ url: 'http://127.0.0.1:8080/csrf-ok.mp4' }) });
    expect(ok.status).toBe(201);
  });

  it('login brute force ends in 429', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 25; i++) statuses.push((await login('alice', `wrong-${i}`)).status);
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
    expect(statuses.slice(statuses.indexOf(429)).every((s) => s === 429)).toBe(true);
    await healthy();
  });
});
