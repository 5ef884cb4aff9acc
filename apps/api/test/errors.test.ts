// Invariant 6: bad input gets a clear 4xx with a stable code in one shape
// `{ error: { code, message, requestId } }`, never a 5xx and never a partial write.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FORMAT_PRESETS, OUTPUT_CONTAINERS } from '@dubgate/contracts/jobs';
import { bearer, counts, createTestApp, createUser, expectError, loginAdmin, videoUrl, type TestApp } from './helpers.js';

let t: TestApp;
let token: string;

beforeAll(async () => {
  // A small body limit so "too large" is cheap to reach.
  t = await createTestApp({ name: 'errors', env: { BODY_LIMIT_BYTES: '2KiB' } });
  token = (await loginAdmin(t.app)).token;
});
afterAll(async () => {
  await t?.close();
});

const rawPost = (url: string, body: string | Buffer, contentType?: string, extra: Record<string, string> = {}) =>
  t.app.inject({
    method: 'POST',
    url,
    headers: { ...bearer(token), ...(contentType === undefined ? {} : { 'content-type': contentType }), ...extra },
    body,
  });

describe('request bodies', () => {
  it.each([
    ['truncated JSON', '{"url": "https://videos.example.com/a"'],
    ['a trailing comma', '{"url": "https://videos.example.com/a",}'],
    ['single quotes', "{'url': 'https://videos.example.com/a'}"],
    ['plain text', 'hello'],
    ['an empty body', ''],
  ])('answers %s with 400 INVALID_JSON and writes nothing', async (_name, body) => {
    const before = counts(t.db());
    expectError(await rawPost('/api/jobs', body, 'application/json'), 400, 'INVALID_JSON');
    expect(counts(t.db())).toEqual(before);
  });

  it('refuses a __proto__ key instead of merging it', async () => {
    const before = counts(t.db());
    const res = await rawPost('/api/jobs', '{"url":"https://videos.example.com/a","__proto__":{"isAdmin":true}}', 'application/json');
    const body = expectError(res, 400);
    expect(['INVALID_JSON', 'VALIDATION_FAILED']).toContain(body.error.code);
    expect(counts(t.db())).toEqual(before);
  });

  it.each([
    ['a JSON array', '[{"url":"https://videos.example.com/a"}]'],
    ['JSON null', 'null'],
    ['a JSON string', '"https://videos.example.com/a"'],
    ['a JSON number', '42'],
  ])('answers %s (valid JSON, wrong type) with 400 VALIDATION_FAILED', async (_name, body) => {
    const before = counts(t.db());
    const res = await rawPost('/api/jobs', body, 'application/json');
    const err = expectError(res, 400);
    expect(['VALIDATION_FAILED', 'INVALID_JSON']).toContain(err.error.code);
    expect(counts(t.db())).toEqual(before);
  });

  it.each([
    ['text/plain', 'url=https://videos.example.com/a'],
    ['application/x-www-form-urlencoded', 'url=https%3A%2F%2Fvideos.example.com%2Fa'],
    ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="url"\r\n\r\nhttps://videos.example.com/a\r\n--x--'],
    ['application/xml', '<job><url>https://videos.example.com/a</url></job>'],
  ])('answers content-type %s with 415 UNSUPPORTED_MEDIA_TYPE', async (type, body) => {
    const before = counts(t.db());
    expectError(await rawPost('/api/jobs', body, type), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expect(counts(t.db())).toEqual(before);
  });

  it('accepts application/json with a charset', async () => {
    const res = await rawPost('/api/jobs', JSON.stringify({ url: videoUrl() }), 'application/json; charset=utf-8');
    expect(res.statusCode).toBe(201);
  });

  it('answers a body over BODY_LIMIT_BYTES with 413 BODY_TOO_LARGE and writes nothing', async () => {
    const before = counts(t.db());
    const big = JSON.stringify({ url: videoUrl(), padding: 'x'.repeat(4096) });
    expectError(await rawPost('/api/jobs', big, 'application/json'), 413, 'BODY_TOO_LARGE');
    const login = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'admin', password: 'x'.repeat(3000) } });
    expectError(login, 413, 'BODY_TOO_LARGE');
    expect(counts(t.db())).toEqual(before);
  });

  it('answers a Content-Length that lies with a 4xx', async () => {
    const before = counts(t.db());
    const res = await rawPost('/api/jobs', '{"url":"https://videos.example.com/a"}', 'application/json', { 'content-length': '5' });
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.statusCode).toBeLessThan(500);
    expectError(res, res.statusCode);
    expect(counts(t.db())).toEqual(before);
  });
});

describe('routes', () => {
  it.each([
    ['GET', '/api/nope'],
    ['GET', '/'],
    ['POST', '/api/jobs/abc/explode'],
    ['PUT', '/api/jobs'],
    ['PATCH', '/api/jobs/abc'],
    ['DELETE', '/api/auth/login'],
    ['GET', '/api/jobs/abc/logs/extra'],
  ] as const)('%s %s answers 404 ROUTE_NOT_FOUND, authenticated or not', async (method, url) => {
    expectError(await t.app.inject({ method, url }), 404, 'ROUTE_NOT_FOUND');
    expectError(await t.app.inject({ method, url, headers: bearer(token) }), 404, 'ROUTE_NOT_FOUND');
  });

  it('does not echo a hostile path back unescaped', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/%3Cscript%3Ealert(1)%3C%2Fscript%3E' });
    expectError(res, 404, 'ROUTE_NOT_FOUND');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
  });
});

describe('the error shape', () => {
  it('carries the request id, taken from x-request-id when the client sends one', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/jobs/none', headers: { ...bearer(token), 'x-request-id': 'trace-abc-123' } });
    const body = expectError(res, 404, 'JOB_NOT_FOUND');
    expect(body.error.requestId).toBe('trace-abc-123');
    const other = expectError(await t.app.inject({ method: 'GET', url: '/api/jobs/none', headers: bearer(token) }), 404);
    expect(other.error.requestId).not.toBe('trace-abc-123');
  });

  it('is the same for every kind of failure', async () => {
    // expectError checks the shape; this walks one failure of each kind through it.
    expectError(await t.app.inject({ method: 'GET', url: '/api/jobs' }), 401, 'UNAUTHENTICATED');
    expectError(await t.app.inject({ method: 'GET', url: '/api/users', headers: bearer(await userToken()) }), 403, 'FORBIDDEN');
    expectError(await t.app.inject({ method: 'GET', url: '/api/jobs?limit=0', headers: bearer(token) }), 400, 'VALIDATION_FAILED');
    expectError(await rawPost('/api/jobs', '{', 'application/json'), 400, 'INVALID_JSON');
    expectError(await rawPost('/api/jobs', 'x', 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await t.app.inject({ method: 'GET', url: '/nope' }), 404, 'ROUTE_NOT_FOUND');
    const validation = expectError(
      await t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(token), payload: { url: 1, extra: true } }),
      400,
      'VALIDATION_FAILED',
    );
    expect(validation.error.details).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: expect.stringContaining('body') as unknown as string })]),
    );
  });

  it('never shows internals in a message', async () => {
    const res = await rawPost('/api/jobs', '{"url": ', 'application/json');
    const body = expectError(res, 400, 'INVALID_JSON');
    expect(body.error.message).not.toMatch(/FST_|node_modules|at .*\.js:\d+/);
  });
});

let cachedUserToken: string | undefined;
async function userToken(): Promise<string> {
  if (cachedUserToken) return cachedUserToken;
  cachedUserToken = (await createUser(t.app, token, 'plain-user')).token;
  return cachedUserToken;
}

describe('generated input', () => {
  const anyText = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.webUrl(), fc.constantFrom('', ' ', '\u0000', '../..', '%00'));
  const jobBody = fc.oneof(
    fc.jsonValue(),
    fc.record(
      {
        url: fc.oneof(fc.webUrl({ withQueryParameters: true, withFragments: true }), anyText, fc.jsonValue()),
        requestedDubbing: fc.oneof(fc.boolean(), fc.jsonValue()),
        targetLang: fc.oneof(fc.constantFrom('de', 'pt-BR', 'zh-Hans'), anyText, fc.jsonValue()),
        formatPreset: fc.oneof(fc.constantFrom(...FORMAT_PRESETS), anyText),
        outputContainer: fc.oneof(fc.constantFrom(...OUTPUT_CONTAINERS), anyText),
        extra: fc.jsonValue(),
      },
      { requiredKeys: [] },
    ),
  );

  it('POST /api/jobs answers 201 or a 4xx, and a 4xx writes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(jobBody, async (payload) => {
        const before = counts(t.db());
        const res = await t.app.inject({
          method: 'POST',
          url: '/api/jobs',
          headers: { ...bearer(token), 'content-type': 'application/json' },
          body: JSON.stringify(payload) ?? 'null',
        });
        if (res.statusCode === 201) {
          expect(counts(t.db()).jobs).toBe(before.jobs + 1);
        } else {
          expectError(res, res.statusCode);
          expect(res.statusCode).toBeGreaterThanOrEqual(400);
          expect(res.statusCode).toBeLessThan(500);
          expect(counts(t.db())).toEqual(before);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('GET /api/jobs and /api/jobs/:id/logs answer 200 or a 4xx for any query', async () => {
    const key = fc.constantFrom('status', 'search', 'limit', 'cursor', 'offset', 'after', 'level', 'x', 'status[]', '__proto__');
    const value = fc.oneof(anyText, fc.integer().map(String), fc.constantFrom('QUEUED,CANCELED', 'QUEUED,', ',', '-1', '1e3', '0x10'));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(key, value), { maxLength: 4 }), fc.boolean(), async (pairs, logs) => {
        const qs = pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        const res = await t.app.inject({ method: 'GET', url: `/api/jobs${logs ? '/some-id/logs' : ''}?${qs}`, headers: bearer(token) });
        if (res.statusCode !== 200) {
          expectError(res, res.statusCode);
          expect(res.statusCode).toBeLessThan(500);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('job ids in the path answer 400 or 404, never more', async () => {
    await fc.assert(
      fc.asyncProperty(anyText, fc.constantFrom('GET', 'DELETE', 'POST'), async (id, method) => {
        const url = `/api/jobs/${encodeURIComponent(id)}${method === 'POST' ? '/cancel' : ''}`;
        const res = await t.app.inject({ method, url, headers: bearer(token) });
        expectError(res, res.statusCode);
        expect([400, 404]).toContain(res.statusCode);
      }),
      { numRuns: 200 },
    );
  });

  it('any Authorization header or cookie answers 401, never more', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyText, anyText.map((x) => `Bearer ${x}`), anyText.map((x) => `Bearer dgt_${x}`)), anyText, async (auth, cookie) => {
        const headers: Record<string, string> = {};
        // Header values must be latin1 without control characters to be sent at all.
        const printable = (v: string) => v.replace(/[^\x20-\x7e]/g, '');
        headers.authorization = printable(auth);
        headers.cookie = `dubgate_session=${printable(cookie)}`;
        const res = await t.app.inject({ method: 'GET', url: '/api/jobs', headers });
        expectError(res, 401);
      }),
      { numRuns: 200 },
    );
  });
});

describe('an unexpected failure', () => {
  it('answers 500 INTERNAL_ERROR in the same shape and hides the internals', async () => {
    // A separate app with a route that fails like a bug would; its 500 is the point here.
    const own = await createTestApp({ name: 'errors-500' });
    try {
      own.app.get('/api/boom', async () => {
        throw new Error('SQLITE_CORRUPT at /srv/data/gateway.db');
      });
      const res = await own.app.inject({ method: 'GET', url: '/api/boom', headers: bearer((await loginAdmin(own.app)).token) });
      const body = expectError(res, 500, 'INTERNAL_ERROR');
      expect(res.body).not.toMatch(/SQLITE|gateway\.db|\/srv|at .*:\d+/);
      expect(body.error.message).toBe('Internal error');
    } finally {
      own.responses.length = 0;
      await own.close();
    }
  });
});

describe('no 5xx anywhere in this file', () => {
  it('recorded every response below 500', () => {
    expect(t.responses.length).toBeGreaterThan(40);
    expect(t.responses.filter((r) => r.status >= 500)).toEqual([]);
  });
});
