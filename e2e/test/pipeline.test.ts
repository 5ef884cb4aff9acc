import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'socket.io-client';
import { startSystem, waitFor, type System } from './system.js';
import { cueCount, ffprobe, makeVideo, startMediaServer, type MediaServer } from './media.js';

interface JobJson {
  id: string;
  status: string;
  outputPath: string | null;
}
interface EventJson {
  id: number;
  type: string;
  payload: { from?: string; to?: string } | null;
}

let system: System;
let media: MediaServer & { port: number };
let mediaDir: string;
let token: string;

beforeAll(async () => {
  mediaDir = mkdtempSync(join(tmpdir(), 'dubgate-e2e-media-'));
  makeVideo(mediaDir, 'short', 4);
  makeVideo(mediaDir, 'long', 40, 1); // many cues: a dub that takes a while
  makeVideo(mediaDir, 'slow', 12);
  media = await startMediaServer(mediaDir, { names: ['slow.mp4'], chunk: 16 * 1024, everyMs: 100 });
  system = await startSystem({ env: { WORKER_LOCK_DURATION_MS: '3000', WORKER_STALLED_INTERVAL_MS: '1000' } });
  token = await system.token();
}, 300_000); // starting the system on a loaded machine: a deadline, not an expectation

afterAll(async () => {
  await system?.stop();
  await media?.close();
  rmSync(mediaDir, { recursive: true, force: true });
});

async function createJob(body: Record<string, unknown>): Promise<JobJson> {
  const r = await system.api<{ job: JobJson }>('POST', '/api/jobs', body, token);
  expect(r.status).toBe(201);
  return r.body.job;
}

async function waitForStatus(id: string, statuses: string[], timeoutMs = 90_000): Promise<JobJson> {
  return waitFor(
    `job ${id} to reach ${statuses.join('/')}`,
    async () => {
      const r = await system.api<{ job: JobJson }>('GET', `/api/jobs/${id}`, undefined, token);
      return statuses.includes(r.body.job.status) ? r.body.job : null;
    },
    timeoutMs,
    200,
  );
}

async function transitions(id: string): Promise<string[]> {
  const out: string[] = [];
  let after = 0;
  for (;;) {
    const r = await system.api<{ items: EventJson[]; nextAfter: number | null }>('GET', `/api/jobs/${id}/logs?after=${after}&limit=500`, undefined, token);
    for (const e of r.body.items) if (e.type === 'state_change') out.push(`${e.payload?.from}->${e.payload?.to}`);
    if (r.body.nextAfter === null || r.body.items.length === 0) return out;
    after = r.body.nextAfter;
  }
}

/** Collects what a subscribed socket receives for one job. */
function watch(socket: Socket, jobId: string) {
  const seen = { states: [] as string[], progress: [] as Array<{ type: string; percent: number; stage: string | null }> };
  socket.on('state_change', (e: { jobId: string; to: string }) => e.jobId === jobId && seen.states.push(e.to));
  socket.on('progress', (e: { jobId: string; type: string; percent: number; stage: string | null }) => e.jobId === jobId && seen.progress.push(e));
  return seen;
}

async function subscribe(socket: Socket, jobId: string) {
  const ack = await socket.timeout(30_000).emitWithAck('subscribe', [jobId]);
  expect(ack.results[0].accepted).toBe(true);
}

// Per test: above the sum of its waits (deadlines, reached only when something is wrong).
describe('a URL in, a finished and dubbed video out', { timeout: 600_000 }, () => {
  it('goes through every state of the seed to COMPLETE with a dubbed track in the container', async () => {
    const socket = await system.socket(token);
    const added: string[] = [];
    socket.on('job_added', (e: { jobId: string }) => added.push(e.jobId));
    const job = await createJob({ url: media.url('short.mp4'), requestedDubbing: true, targetLang: 'es', outputContainer: 'mkv' });
    await subscribe(socket, job.id);
    const seen = watch(socket, job.id);

    const done = await waitForStatus(job.id, ['COMPLETE', 'FAILED', 'CANCELED']);
    expect(done.status).toBe('COMPLETE');
    expect(await transitions(job.id)).toEqual([
      'QUEUED->DOWNLOADING',
      'DOWNLOADING->DOWNLOADED',
      'DOWNLOADED->DUBBING',
      'DUBBING->DUBBED',
      'DUBBED->MUXING',
      'MUXING->COMPLETE',
    ]);
    await waitFor('the COMPLETE state_change on the socket', () => seen.states.includes('COMPLETE'), 60_000);
    expect(added).toContain(job.id);
    expect(seen.progress.length).toBeGreaterThan(0);

    const probe = ffprobe(join(system.mediaRoot, done.outputPath!));
    expect(probe.format.format_name).toContain('matroska');
    const audio = probe.streams.filter((s) => s.codec_type === 'audio');
    expect(probe.streams.filter((s) => s.codec_type === 'video')).toHaveLength(1);
    expect(audio).toHaveLength(2);
    expect(audio[1]!.tags?.language).toBe('spa');
  });

  it('without dubbing: no dub states, video and original audio only', async () => {
    const job = await createJob({ url: media.url('short.mp4'), outputContainer: 'mp4' });
    const done = await waitForStatus(job.id, ['COMPLETE', 'FAILED', 'CANCELED']);
    expect(done.status).toBe('COMPLETE');
    expect(await transitions(job.id)).toEqual(['QUEUED->DOWNLOADING', 'DOWNLOADING->DOWNLOADED', 'DOWNLOADED->MUXING', 'MUXING->COMPLETE']);
    const probe = ffprobe(join(system.mediaRoot, done.outputPath!));
    expect(probe.format.format_name).toContain('mp4');
    expect(probe.streams.map((s) => s.codec_type).sort()).toEqual(['audio', 'video']);
  });

  it('cancel during a slow download stops the transfer and nothing is written after the cancel', async () => {
    const job = await createJob({ url: media.url('slow.mp4') });
    const request = await waitFor('the download to start', () => media.requests.find((r) => r.path === 'slow.mp4' && r.closedAt === null && r.sent > 32 * 1024));
    const r = await system.api<{ job: JobJson }>('POST', `/api/jobs/${job.id}/cancel`, undefined, token);
    expect(r.status).toBe(200);
    expect(r.body.job.status).toBe('CANCELED');
    // The worker hears the cancel signal and drops the connection within 5 s.
    await waitFor('the transfer to stop', () => request.closedAt !== null, 5_000);
    const dir = join(system.mediaRoot, job.id);
    const sizes = () => new Map(existsSync(dir) ? readdirSync(dir).map((f) => [f, statSync(join(dir, f)).size] as const) : []);
    const before = sizes();
    await new Promise((res) => setTimeout(res, 1_500));
    // No byte written after the cancel: no file grew and none appeared (the worker may remove its partial files).
    for (const [file, size] of sizes()) {
      expect(before.has(file), `${file} appeared after the cancel`).toBe(true);
      expect(size, `${file} grew after the cancel`).toBeLessThanOrEqual(before.get(file)!);
    }
    expect(existsSync(join(dir, 'source.mp4'))).toBe(false); // no partial file taken for a finished one
    expect((await waitForStatus(job.id, ['CANCELED'])).status).toBe('CANCELED');
    expect((await transitions(job.id)).at(-1)).toMatch(/->CANCELED$/);
  });

  it('a dub killed halfway resumes from its checkpoint without redoing earlier cues', async () => {
    const total = cueCount(join(mediaDir, 'long.mp4'));
    const socket = await system.socket(token);
    const job = await createJob({ url: media.url('long.mp4'), requestedDubbing: true, targetLang: 'en' });
    await subscribe(socket, job.id);
    const seen = watch(socket, job.id);
    const cueOf = (p: { stage: string | null }) => Number(/^cue (\d+)\//.exec(p.stage ?? '')?.[1] ?? NaN);

    await waitFor('the dub to pass cue 8', () => seen.progress.some((p) => cueOf(p) >= 8), 90_000, 20);
    await system.kill('worker-dub', 'SIGKILL');
    const lastBeforeKill = Math.max(...seen.progress.map(cueOf).filter(Number.isFinite));
    const countBefore = seen.progress.length;
    await system.start('worker-dub');

    const done = await waitForStatus(job.id, ['COMPLETE', 'FAILED', 'CANCELED'], 120_000);
    expect(done.status).toBe('COMPLETE');
    const afterRestart = seen.progress.slice(countBefore).map(cueOf).filter(Number.isFinite);
    expect(afterRestart.length).toBeGreaterThan(0);
    // The second run starts at the checkpoint (at most the cue in flight when killed is redone).
    expect(Math.min(...afterRestart)).toBeGreaterThanOrEqual(lastBeforeKill);
    // Killed halfway indeed (progress is coalesced by the relay, so not every cue is seen).
    expect(lastBeforeKill).toBeLessThan(total);
    expect((await transitions(job.id)).filter((t) => t.endsWith('->COMPLETE'))).toHaveLength(1);
  });

  it('a worker killed with SIGKILL mid-stage: the stage runs again and the job completes once', async () => {
    const job = await createJob({ url: media.url('slow.mp4') });
    await waitFor('the download to start', () => media.requests.find((r) => r.path === 'slow.mp4' && r.closedAt === null && r.sent > 32 * 1024));
    await system.kill('worker-download', 'SIGKILL');
    await system.start('worker-download');
    const done = await waitForStatus(job.id, ['COMPLETE', 'FAILED', 'CANCELED'], 120_000);
    expect(done.status).toBe('COMPLETE');
    const t = await transitions(job.id);
    expect(t.filter((x) => x.endsWith('->COMPLETE'))).toHaveLength(1);
    expect(t).toEqual(['QUEUED->DOWNLOADING', 'DOWNLOADING->DOWNLOADED', 'DOWNLOADED->MUXING', 'MUXING->COMPLETE']);
  });
});
