// The SSRF corpus through POST /api/jobs: every spelling of loopback, private, link-local and
// metadata targets, other schemes and sensitive ports is refused with 400 URL_NOT_ALLOWED and
// writes nothing; ALLOW_PRIVATE_URLS opens the LAN but never the metadata service.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, counts, createTestApp, expectError, loginAdmin, type TestApp } from './helpers.js';

const CORPUS = [
  'http://127.0.0.1/v.mp4',
  'http://127.1/v.mp4',
  'http://0x7f000001/v.mp4',
  'http://2130706433/v.mp4',
  'http://0177.0.0.1/v.mp4',
  'http://[::1]/v.mp4',
  'http://[::ffff:127.0.0.1]/v.mp4',
  'http://[::ffff:7f00:1]/v.mp4',
  'http://169.254.169.254/latest/meta-data/',
  'http://[::ffff:169.254.169.254]/latest/meta-data/',
  'http://metadata.google.internal/computeMetadata/v1/',
  'http://10.0.0.1/v.mp4',
  'http://172.16.0.1/v.mp4',
  'http://172.31.255.255/v.mp4',
  'http://192.168.0.1/v.mp4',
  'http://[fc00::1]/v.mp4',
  'http://[fd00::1]/v.mp4',
  'http://[fe80::1]/v.mp4',
  'http://0.0.0.0/v.mp4',
  'http://localhost/v.mp4',
  'http://LOCALHOST./v.mp4',
  'http://nas.local/v.mp4',
  'file:///etc/passwd',
  'gopher://example.com/_SET%20x%201',
  'ftp://example.com/v.mp4',
  'javascript:alert(1)',
  'http://example.com:6379/',
  'https://example.com:22/',
  'http://user:pass@example.com/v.mp4',
];

describe('SSRF corpus (default policy)', () => {
  let t: TestApp;
  let token: string;
  beforeAll(async () => {
    t = await createTestApp({ name: 'ssrf' });
    token = (await loginAdmin(t.app)).token;
  });
  afterAll(async () => {
    await t?.close();
  });

  it.each(CORPUS)('refuses %s with 400 URL_NOT_ALLOWED and writes nothing', async (url) => {
    const before = counts(t.db());
    const res = await t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(token), payload: { url } });
    expectError(res, 400, 'URL_NOT_ALLOWED');
    expect(counts(t.db())).toEqual(before);
    expect(await t.redis().exists(`${t.queuePrefix}:download:wait`)).toBe(0);
  });

  it('accepts a public https URL (the control case)', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(token), payload: { url: 'https://www.example.com/watch?v=1' } });
    expect(res.statusCode).toBe(201);
  });
});

describe('ALLOW_PRIVATE_URLS=true', () => {
  let t: TestApp;
  let token: string;
  beforeAll(async () => {
    t = await createTestApp({ name: 'ssrf-lan', env: { ALLOW_PRIVATE_URLS: 'true' } });
    token = (await loginAdmin(t.app)).token;
  });
  afterAll(async () => {
    await t?.close();
  });
  const post = (url: string) => t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(token), payload: { url } });

  it.each(['http://127.0.0.1:8080/x', 'http://192.168.1.20/v.mp4', 'http://[fc00::1]/v.mp4', 'http://nas.local/v.mp4'])(
    'accepts the LAN target %s',
    async (url) => {
      const res = await post(url);
      expect(res.statusCode).toBe(201);
      const job = res.json<{ job: { id: string } }>().job;
      expect(await t.redis().exists(`${t.queuePrefix}:download:${job.id}_download_g0`)).toBe(1);
    },
  );

  it.each([
    'http://169.254.169.254/latest/meta-data/',
    'http://[::ffff:169.254.169.254]/',
    'http://[fd00:ec2::254]/latest/meta-data/',
    'http://metadata.google.internal/computeMetadata/v1/',
    'http://127.0.0.1:6379/',
    'file:///etc/passwd',
  ])('still refuses %s', async (url) => {
    const before = counts(t.db());
    expectError(await post(url), 400, 'URL_NOT_ALLOWED');
    expect(counts(t.db())).toEqual(before);
  });
});
