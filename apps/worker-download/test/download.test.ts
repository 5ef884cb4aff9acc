// The download stage end to end on a real Redis and a local HTTP server: streaming with progress,
// sidecar subtitles, ffprobe metadata, Range resume, cancel, SSRF, the size cap, web pages.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DownloadSettings } from '../src/download.js';
import type { Resolver } from '../src/safe-http.js';
import {
  fakeYtDlp,
  makeFixture,
  pathWithOnlyFfprobe,
  payload,
  rand,
  serve,
  sleep,
  startHarness,
  startServer,
  waitFor,
  type Fixture,
  type Harness,
  type TestServer,
} from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 });

let fx: Fixture;
let srv: TestServer;
beforeAll(async () => {
  fx = makeFixture();
  srv = await startServer();
  srv.route('/v.mp4', serve(fx.video, { ranges: true, etag: '"v1"' }));
  srv.route('/v.srt', (_req, res) => res.writeHead(200, { 'content-type': 'application/x-subrip' }).end(fx.srt));
  srv.route('/paced/v.mp4', serve(fx.video, { pieces: 10, pauseMs: 120 }));
});
afterAll(async () => {
  await srv?.close();
  fx?.cleanup();
});

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function harness(settings: Partial<DownloadSettings> = {}): Promise<Harness> {
  const h = await startHarness({ maxBytes: 10 * 2 ** 20, allowPrivate: true, ...settings });
  cleanups.push(() => h.close());
  return h;
}

const newJobId = () => `job-${rand()}`;

/**
 * Drops the connection in the middle of a response once the worker has written `bytes` of it to
 * `part`. Dropped any earlier, a busy worker may not have read them yet: a reset discards what
 * sat in its socket buffer, and an aborted pipeline what its file stream had not flushed, and
 * there is nothing to resume from.
 */
async function dropOnceWritten(res: import('node:http').ServerResponse, part: string, bytes: number): Promise<void> {
  await waitFor(() => existsSync(part) && statSync(part).size >= bytes, undefined, `${bytes} bytes in ${part}`);
  res.destroy();
}
const files = (h: Harness, jobId: string) => (existsSync(join(h.mediaRoot, jobId)) ? readdirSync(join(h.mediaRoot, jobId)).sort() : []);
/** Resolves every name to `address` (what DNS would answer for a hostile name). */
const resolveTo =
  (...addresses: string[]): Resolver =>
  async () =>
    addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

describe('a direct media URL', () => {
  it('is streamed into <jobId>/source.mp4 with percent, speed and eta, probed, and its .srt sidecar fetched', async () => {
    const h = await harness();
    const jobId = newJobId();
    srv.route('/paced/v.srt', (_req, res) => res.writeHead(200).end(fx.srt));
    const id = await h.add(payload(jobId, `${srv.base}/paced/v.mp4`, { wantSubtitles: true }));
    const job = await h.settle(id);
    expect(job.failedReason).toBeFalsy();
    expect(job.returnvalue).toMatchObject({
      mediaPath: `${jobId}/source.mp4`,
      sizeBytes: fx.video.length,
      title: 'v',
      width: 320,
      height: 240,
      videoCodec: 'h264',
      audioCodec: 'aac',
      subtitlePath: `${jobId}/source.srt`,
    });
    expect(job.returnvalue.durationSec).toBeCloseTo(3, 0);
    expect(readFileSync(join(h.mediaRoot, jobId, 'source.mp4')).equals(fx.video)).toBe(true);
    expect(readFileSync(join(h.mediaRoot, jobId, 'source.srt'), 'utf8')).toBe(fx.srt);
    // Nothing partial is left beside the finished files.
    expect(files(h, jobId)).toEqual(['source.mp4', 'source.srt']);

    await waitFor(() => h.events.some((e) => e.message.jobId === jobId && e.message.payload.final === true), undefined, 'final progress');
    const mine = h.events.filter((e) => e.message.jobId === jobId);
    for (const e of mine) expect(e.errors).toEqual([]);
    const progress = mine.filter((e) => e.channel === 'events:progress').map((e) => e.message.payload);
    const moving = progress.filter((p) => typeof p.speed === 'number' && (p.speed as number) > 0);
    expect(moving.length).toBeGreaterThanOrEqual(2);
    expect(moving.some((p) => typeof p.eta === 'number')).toBe(true);
    const percents = progress.map((p) => p.percent as number);
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(percents.some((p) => p > 10 && p < 90)).toBe(true);
    expect(progress.at(-1)).toMatchObject({ stage: 'download', percent: 100, final: true });
  });

  it('resumes with Range after a failed first attempt, and the file is byte-identical', async () => {
    const h = await harness();
    const jobId = newJobId();
    const half = Math.floor(fx.video.length / 2);
    const full = serve(fx.video, { ranges: true, etag: '"r1"' });
    srv.route('/drop/v.mp4', (req, res, n) => {
      if (n > 1) return full(req, res, n);
      // The first answer promises the whole file, sends half, and drops the connection.
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': fx.video.length, 'accept-ranges': 'bytes', etag: '"r1"' });
      res.write(fx.video.subarray(0, half), () => void dropOnceWritten(res, join(h.mediaRoot, jobId, 'source.part'), half));
    });
    const id = await h.add(payload(jobId, `${srv.base}/drop/v.mp4`), 2);
    const job = await h.settle(id);
    expect(job.failedReason ?? '').not.toMatch(/PERMANENT/);
    expect(await h.state(id)).toBe('completed');
    expect(job.attemptsMade).toBe(2);
    const [first, second] = srv.seen('/drop/v.mp4');
    expect(first?.headers.range).toBeUndefined();
    expect(second?.headers.range).toMatch(/^bytes=\d+-$/);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(second!.headers.range!)![1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(half);
    expect(second?.headers['if-range']).toBe('"r1"');
    expect(readFileSync(join(h.mediaRoot, jobId, 'source.mp4')).equals(fx.video)).toBe(true);
    expect(files(h, jobId)).toEqual(['source.mp4']);
    // Published during the run; the subscriber receives it asynchronously.
    const resumingLine = `resuming the download at byte ${resumedAt}`;
    await waitFor(() => h.events.some((e) => e.message.jobId === jobId && e.message.payload.message === resumingLine), undefined, 'resuming log');
    const logs = h.events.filter((e) => e.message.jobId === jobId && e.channel === 'events:log').map((e) => e.message.payload.message);
    expect(logs).toContain(`resuming the download at byte ${resumedAt}`);
  });

  it('starts over when the server answers a Range request with 200', async () => {
    const h = await harness();
    const jobId = newJobId();
    const whole = serve(fx.video);
    srv.route('/norange/v.mp4', (req, res, n) => {
      if (n > 1) return whole(req, res, n);
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': fx.video.length });
      res.write(fx.video.subarray(0, 1000), () => void dropOnceWritten(res, join(h.mediaRoot, jobId, 'source.part'), 1000));
    });
    const id = await h.add(payload(jobId, `${srv.base}/norange/v.mp4`), 2);
    await h.settle(id);
    expect(await h.state(id)).toBe('completed');
    expect(srv.seen('/norange/v.mp4')[1]?.headers.range).toMatch(/^bytes=/);
    expect(readFileSync(join(h.mediaRoot, jobId, 'source.mp4')).equals(fx.video)).toBe(true);
  });

  it('stops the transfer on cancel: the connection closes, the .part is removed, nothing is written afterwards', async () => {
    const h = await harness();
    const jobId = newJobId();
    // 4 MB trickled at 16 KB per 50 ms: it would take ~13 s.
    srv.route('/slow/v.mp4', serve(Buffer.alloc(4 * 2 ** 20, 7), { pieces: 256, pauseMs: 50 }));
    const id = await h.add(payload(jobId, `${srv.base}/slow/v.mp4`), 3);
    const part = join(h.mediaRoot, jobId, 'source.part');
    await waitFor(() => existsSync(part) && readFileSync(part).length > 32 * 1024, undefined, 'transfer under way');
    const t0 = Date.now();
    await h.cancel(jobId);
    const job = await h.settle(id, 5_000);
    const acknowledged = Date.now();
    expect(acknowledged - t0).toBeLessThan(5_000);
    expect(job.failedReason).toBe('PERMANENT: canceled');
    expect(job.attemptsMade).toBe(1);
    await waitFor(() => srv.closed.includes('/slow/v.mp4'), undefined, 'server saw the connection close');
    // Gone at acknowledgement, and still nothing a second later (proving that nothing is written
    // late: there is no event for "nothing happened", so this pause stays).
    expect(files(h, jobId)).toEqual([]);
    await sleep(1_000);
    expect(files(h, jobId)).toEqual([]);
    expect(await h.state(id)).toBe('failed');
    expect(srv.seen('/slow/v.mp4')).toHaveLength(1);
  });

  it('keeps the .part when a shutdown hands the job back, and the next worker resumes it with Range', async () => {
    const a = await harness();
    const jobId = newJobId();
    srv.route('/handback/v.mp4', serve(fx.video, { ranges: true, pieces: 40, pauseMs: 100 }));
    const id = await a.add(payload(jobId, `${srv.base}/handback/v.mp4`), 2);
    const part = join(a.mediaRoot, jobId, 'source.part');
    await waitFor(() => existsSync(part) && readFileSync(part).length > 4 * 1024, undefined, 'transfer under way');
    await a.worker.close(); // shutdownTimeoutMs 1000: aborted and handed back
    const kept = readFileSync(part).length;
    expect(kept).toBeGreaterThan(0);
    expect(['delayed', 'waiting']).toContain(await a.state(id));

    const b = await startHarness({ maxBytes: 10 * 2 ** 20, allowPrivate: true }, a);
    cleanups.push(() => b.worker.close());
    const job = await b.settle(id);
    expect(await b.state(id)).toBe('completed');
    expect(job.attemptsMade).toBe(1);
    const second = srv.seen('/handback/v.mp4')[1];
    expect(second?.headers.range).toBe(`bytes=${kept}-`);
    expect(readFileSync(join(a.mediaRoot, jobId, 'source.mp4')).equals(fx.video)).toBe(true);
  });

  it('refuses a file larger than DOWNLOAD_MAX_BYTES, announced or not, and leaves no .part', async () => {
    const cap = Math.floor(fx.video.length / 2);
    const h = await harness({ maxBytes: cap });
    const a = newJobId();
    const b = newJobId();
    srv.route('/chunked/v.mp4', serve(fx.video, { chunked: true, pieces: 4, pauseMs: 10 }));
    const ia = await h.add(payload(a, `${srv.base}/v.mp4`), 3);
    const ib = await h.add(payload(b, `${srv.base}/chunked/v.mp4`), 3);
    const ja = await h.settle(ia);
    const jb = await h.settle(ib);
    expect(ja.failedReason).toBe(`PERMANENT: the file is ${fx.video.length} bytes, more than the limit of ${cap}`);
    expect(jb.failedReason).toBe(`PERMANENT: the file is larger than the limit of ${cap} bytes`);
    expect(ja.attemptsMade + jb.attemptsMade).toBe(2);
    expect(files(h, a)).toEqual([]);
    expect(files(h, b)).toEqual([]);
    // Only this test's jobs (events:error is shared with the other suites), once both arrived.
    const errorsOf = () => h.events.filter((e) => e.channel === 'events:error' && [a, b].includes(e.message.jobId));
    await waitFor(() => errorsOf().length >= 2, undefined, 'both error events');
    const codes = errorsOf().map((e) => e.message.payload.code);
    expect(codes).toEqual(['TOO_LARGE', 'TOO_LARGE']);
  });

  it('fails for good on a file that is not media (NOT_MEDIA) and on HTTP 404', async () => {
    const h = await harness();
    const a = newJobId();
    const b = newJobId();
    srv.route('/text.mp4', (_req, res) => res.writeHead(200, { 'content-type': 'video/mp4' }).end('this is not a video at all'));
    const ia = await h.add(payload(a, `${srv.base}/text.mp4`), 3);
    const ib = await h.add(payload(b, `${srv.base}/missing.mp4`), 3);
    const ja = await h.settle(ia);
    const jb = await h.settle(ib);
    expect(ja.failedReason).toMatch(/^PERMANENT: not a media file/);
    expect(jb.failedReason).toMatch(/^PERMANENT: HTTP 404/);
    expect([ja.attemptsMade, jb.attemptsMade]).toEqual([1, 1]);
    expect(files(h, a)).toEqual([]);
  });
});

describe('SSRF', () => {
  it('refuses permanently a host name that resolves to 127.0.0.1 when private addresses are not allowed, before connecting', async () => {
    const h = await harness({ allowPrivate: false, resolver: resolveTo('127.0.0.1') });
    const jobId = newJobId();
    const before = srv.requests.length;
    const id = await h.add(payload(jobId, `http://media.example.com:${srv.port}/v.mp4`), 3);
    const job = await h.settle(id);
    expect(job.failedReason).toMatch(/^PERMANENT: URL not allowed .*media\.example\.com resolves to 127\.0\.0\.1, a loopback or private address/);
    expect(job.attemptsMade).toBe(1);
    expect(srv.requests.length).toBe(before);
    await waitFor(() => h.events.some((e) => e.message.jobId === jobId && e.channel === 'events:error'), undefined, 'error event');
    const err = h.events.find((e) => e.message.jobId === jobId && e.channel === 'events:error');
    expect(err?.message.payload).toMatchObject({ code: 'URL_NOT_ALLOWED', permanent: true });
  });

  it('refuses a name when ANY of its addresses is refused, and a private IP literal', async () => {
    const h = await harness({ allowPrivate: false, resolver: resolveTo('93.184.216.34', '10.0.0.5') });
    const a = newJobId();
    const b = newJobId();
    const ia = await h.add(payload(a, 'https://media.example.com/v.mp4'));
    const ib = await h.add(payload(b, `http://127.0.0.1:${srv.port}/v.mp4`));
    expect((await h.settle(ia)).failedReason).toMatch(/resolves to 10\.0\.0\.5/);
    expect((await h.settle(ib)).failedReason).toMatch(/^PERMANENT: URL not allowed .*loopback or private/);
  });

  it('connects to the checked address and keeps the Host header', async () => {
    const h = await harness({ allowPrivate: true, resolver: resolveTo('127.0.0.1') });
    const jobId = newJobId();
    srv.route('/hosted/v.mp4', serve(fx.video));
    const id = await h.add(payload(jobId, `http://media.example.com:${srv.port}/hosted/v.mp4`));
    const job = await h.settle(id);
    expect(job.returnvalue?.mediaPath).toBe(`${jobId}/source.mp4`);
    expect(srv.seen('/hosted/v.mp4')[0]?.headers.host).toBe(`media.example.com:${srv.port}`);
  });

  it('follows redirects, checking each target: the metadata address, a name resolving to it, and other schemes are refused', async () => {
    const resolver: Resolver = async (host) => [{ address: host === 'metadata.example.com' ? '169.254.169.254' : '127.0.0.1', family: 4 }];
    const h = await harness({ allowPrivate: true, resolver });
    const redirect = (to: string) => (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(302, { location: to }).end();
    srv.route('/to-metadata', redirect('http://169.254.169.254/latest/meta-data/'));
    srv.route('/to-metadata-name', redirect('http://metadata.example.com/latest/meta-data/'));
    srv.route('/to-file', redirect('file:///etc/passwd'));
    srv.route('/hop1', redirect('/hop2'));
    srv.route('/hop2', redirect(`http://media.example.com:${srv.port}/v.mp4`));
    for (let i = 0; i < 6; i++) srv.route(`/loop${i}`, redirect(`/loop${i + 1}`));
    srv.route('/loop6', serve(fx.video));

    const ids = await Promise.all(
      ['/to-metadata', '/to-metadata-name', '/to-file', '/hop1', '/loop0'].map(async (p) => {
        const jobId = newJobId();
        return { jobId, id: await h.add(payload(jobId, `${srv.base}${p}`), 3) };
      }),
    );
    const [meta, metaName, file, hops, loop] = await Promise.all(ids.map(async ({ jobId, id }) => ({ jobId, job: await h.settle(id) })));
    expect(meta!.job.failedReason).toMatch(/^PERMANENT: URL not allowed \(http:\/\/169\.254\.169\.254.*link-local/);
    expect(metaName!.job.failedReason).toMatch(/metadata\.example\.com resolves to 169\.254\.169\.254/);
    expect(file!.job.failedReason).toMatch(/^PERMANENT: URL not allowed .*a redirect to a file: URL/);
    expect(loop!.job.failedReason).toMatch(/^PERMANENT: more than 5 redirects/);
    for (const r of [meta, metaName, file, loop]) expect(r!.job.attemptsMade).toBe(1);
    expect(hops!.job.returnvalue?.mediaPath).toBe(`${hops!.jobId}/source.mp4`);
    expect(srv.seen('/v.mp4').at(-1)?.headers.host).toBe(`media.example.com:${srv.port}`);
  });
});

describe('a web page', () => {
  beforeAll(() => {
    srv.route('/watch', (_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<html><body>a player</body></html>'));
  });

  it('fails permanently naming yt-dlp and how to install it when yt-dlp is not on PATH', async () => {
    const bin = pathWithOnlyFfprobe();
    cleanups.push(() => bin.cleanup());
    const h = await harness({ env: bin.env });
    const jobId = newJobId();
    const id = await h.add(payload(jobId, `${srv.base}/watch?v=abc`), 3);
    const job = await h.settle(id);
    expect(job.failedReason).toMatch(/^PERMANENT: .*web page.*needs yt-dlp.*apt-get install yt-dlp/);
    expect(job.attemptsMade).toBe(1);
    await waitFor(() => h.events.some((e) => e.message.jobId === jobId && e.channel === 'events:error'), undefined, 'error event');
    const err = h.events.find((e) => e.message.jobId === jobId && e.channel === 'events:error');
    expect(err?.message.payload).toMatchObject({ code: 'EXTRACTOR_MISSING', permanent: true });
    expect(files(h, jobId)).toEqual([]);
  });

  it('is downloaded with yt-dlp when it is installed: format preset, progress and subtitles', async () => {
    const fake = fakeYtDlp(fx.videoPath);
    cleanups.push(() => fake.cleanup());
    const h = await harness({ env: fake.env });
    const jobId = newJobId();
    const url = `${srv.base}/watch?v=abc`;
    const id = await h.add(payload(jobId, url, { formatPreset: '720p', wantSubtitles: true }));
    const job = await h.settle(id);
    expect(job.failedReason).toBeFalsy();
    expect(job.returnvalue).toMatchObject({
      mediaPath: `${jobId}/source.mp4`,
      subtitlePath: `${jobId}/source.srt`,
      title: 'A fake title',
      width: 320,
      height: 240,
      sizeBytes: fx.video.length,
    });
    const { args } = JSON.parse(readFileSync(fake.logFile, 'utf8')) as { args: string[] };
    expect(args[args.indexOf('-f') + 1]).toBe('bv*[height<=720]+ba/b[height<=720]');
    expect(args).toEqual(expect.arrayContaining(['--newline', '--no-playlist', '--write-subs', '--sub-langs', 'all', '--convert-subs', 'srt']));
    expect(args.at(-1)).toBe(url);
    expect(args[args.indexOf('-o') + 1]).toBe(join(h.mediaRoot, jobId, '.yt-dlp', 'source.%(ext)s'));
    expect(files(h, jobId)).toEqual(['source.mp4', 'source.srt']);
    // The final progress is the run's last message (in order, on one connection).
    await waitFor(() => h.events.some((e) => e.message.jobId === jobId && e.message.payload.final === true), undefined, 'final progress');
    const progress = h.events.filter((e) => e.message.jobId === jobId && e.channel === 'events:progress').map((e) => e.message.payload);
    expect(progress).toContainEqual(expect.objectContaining({ percent: 25.5, speed: 1.5 * 2 ** 20, eta: 5 }));
    expect(progress.at(-1)).toMatchObject({ percent: 100, final: true });
  });

  it('kills yt-dlp on cancel and leaves nothing of its work behind', async () => {
    const fake = fakeYtDlp(fx.videoPath);
    cleanups.push(() => fake.cleanup());
    const h = await harness({ env: { ...fake.env, FAKE_YTDLP_MODE: 'hang' } });
    const jobId = newJobId();
    const id = await h.add(payload(jobId, `${srv.base}/watch?v=abc`), 3);
    await waitFor(() => existsSync(join(h.mediaRoot, jobId, '.yt-dlp', 'source.mp4.part')), undefined, 'yt-dlp running');
    const { pid } = JSON.parse(readFileSync(fake.logFile, 'utf8')) as { pid: number };
    await h.cancel(jobId);
    const job = await h.settle(id, 5_000);
    expect(job.failedReason).toBe('PERMANENT: canceled');
    expect(() => process.kill(pid, 0)).toThrow();
    expect(files(h, jobId)).toEqual([]);
  });
});
