// `follow` against the whole system (built api, scheduler, relay, realtime) with test stage
// workers: a job that completes (exit 0), one that fails (exit 1), one canceled by another
// client (exit 2), plain lines when stdout is not a terminal, and an API token (polling).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, startSystem, waitFor, type RunResult, type System } from './system.js';

let sys: System;

beforeAll(async () => {
  sys = await startSystem({ apps: ['api', 'scheduler', 'relay', 'realtime'] });
  await sys.startWorkers();
}, 240_000); // starting the system on a loaded machine: a deadline, not an expectation
afterAll(async () => {
  await sys?.stop();
});

let seq = 0;
const testUrl = (tag = 'ok') => `http://127.0.0.1:8089/${tag}-${Date.now()}-${++seq}.mp4`;

function lines(r: RunResult): Array<Record<string, any>> {
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, any>;
      } catch {
        throw new Error(`not a JSON line: ${l}\nstderr: ${r.stderr}`);
      }
    });
}

async function loggedIn() {
  const h = sys.home();
  const r = await sys.cli(['login', '--username', 'admin', '--password-stdin'], { env: h.env, input: `${ADMIN_PASSWORD}\n` });
  expect(r.code, r.stderr).toBe(0);
  return h;
}

async function submit(env: Record<string, string>, args: string[]): Promise<string> {
  const r = await sys.cli(['submit', ...args, '--json'], { env });
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { jobs: Array<{ id: string }> }).jobs[0]!.id;
}

/**
 * Waits until a "gated" job (held at 10 % by the test worker) shows that progress over REST: a
 * follow started from now on sees the job live, however long the CLI takes to start.
 */
async function untilHeldWithProgress(id: string) {
  const token = await sys.token();
  await waitFor(`job ${id} to show its download progress`, async () => (await sys.api<{ job: { status: string; progress: unknown } }>('GET', `/api/jobs/${id}`, undefined, token)).body.job.progress);
}

// Each test runs several CLI processes one after another, all tests at once, on a loaded machine.
describe.concurrent('follow', { timeout: 180_000 }, () => {
  it('follows a job to COMPLETE over the WebSocket: JSON lines, exit 0', async () => {
    const h = await loggedIn();
    const id = await submit(h.env, [testUrl('gated'), '--dub', 'es', '--container', 'mkv']);
    await untilHeldWithProgress(id);
    const { child, done } = sys.spawnCli(['follow', id, '--json', '--interval', '1'], { env: h.env });
    const killer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    // Its first lines are out (the job as it is now, with its progress): let the job go on.
    child.stdout!.once('data', () => sys.release(id));
    const r = await done;
    clearTimeout(killer);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const events = lines(r);
    expect(events[0]).toMatchObject({ event: 'status', jobId: id });
    const end = events.at(-1)!;
    expect(end, r.stdout).toMatchObject({ event: "end", jobId: id, status: "COMPLETE", exitCode: 0 });
    expect(end.outputPath).toBe(`${id}/output.mkv`);
    expect(events.some((e) => e.event === 'state_change')).toBe(true);
    expect(events.some((e) => e.event === 'progress' && typeof e.type === 'string' && typeof e.percent === 'number'), r.stdout).toBe(true);
    expect(events.every((e) => e.event !== 'notice')).toBe(true);

    const show = await sys.cli(['show', id, '--json'], { env: h.env });
    expect(JSON.parse(show.stdout).job.status).toBe('COMPLETE');
  });

  it('prints plain lines when stdout is not a terminal', async () => {
    const h = await loggedIn();
    const id = await submit(h.env, [testUrl()]);
    const r = await sys.cli(['follow', id, '--interval', '1'], { env: h.env, timeoutMs: 120_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).not.toContain('\r');
    expect(r.stdout).not.toContain('\x1b[');
    expect(r.stdout).toMatch(new RegExp(`job ${id} COMPLETE`));
    expect(r.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(2);
  });

  it('draws a progress bar with percent, speed and eta on a terminal', async () => {
    const h = await loggedIn();
    const id = await submit(h.env, [testUrl('gated')]);
    await untilHeldWithProgress(id);
    // Once it has drawn its first bar (the job held at 10 %), the job may go on.
    const r = await sys.cliTty(['follow', id, '--interval', '1'], { env: h.env, timeoutMs: 120_000, onOutput: (out) => out.includes('following job') && sys.release(id) });
    if (r === null) return; // no util-linux `script` here
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('\r');
    expect(r.stdout).toMatch(/\[#+-*\]\s+\d+\.\d%\s+\S+ \S*B\/s\s+eta \d+:\d\d/);
    expect(r.stdout).toMatch(new RegExp(`job ${id} COMPLETE`));
  });

  it('exits 1 when the job FAILS (the worker throws UnrecoverableError)', async () => {
    const h = await loggedIn();
    const id = await submit(h.env, [testUrl('fail')]);
    const r = await sys.cli(['follow', id, '--json', '--interval', '1'], { env: h.env, timeoutMs: 120_000 });
    expect(r.code, r.stderr + r.stdout).toBe(1);
    const end = lines(r).at(-1)!;
    expect(end).toMatchObject({ event: 'end', status: 'FAILED', exitCode: 1 });
    expect(end.error).toMatchObject({ code: expect.any(String) });
    const text = await sys.cli(['follow', id], { env: h.env });
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/FAILED/);
  });

  it('exits 2 when another client cancels the job', async () => {
    const h = await loggedIn();
    const id = await submit(h.env, [testUrl('hang')]);
    const { done, child } = sys.spawnCli(['follow', id, '--json'], { env: h.env });
    const killer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    const token = await sys.token();
    await waitFor('the job to be downloading', async () => (await sys.api<{ job: { status: string } }>('GET', `/api/jobs/${id}`, undefined, token)).body.job.status === 'DOWNLOADING');
    const cancel = await sys.api('POST', `/api/jobs/${id}/cancel`, undefined, token);
    expect(cancel.status).toBe(200);
    const r = await done;
    clearTimeout(killer);
    expect(r.code, r.stderr + r.stdout).toBe(2);
    const events = lines(r);
    expect(events.at(-1)).toMatchObject({ event: 'end', status: 'CANCELED', exitCode: 2 });
  });

  it('with an API token (not accepted on the WebSocket) it follows by polling', async () => {
    const h = await loggedIn();
    const created = JSON.parse((await sys.cli(['token', 'create', 'follow-test', '--json'], { env: h.env })).stdout) as { token: string };
    const env = { DUBGATE_TOKEN: created.token, DUBGATE_API_URL: sys.apiUrl, DUBGATE_REALTIME_URL: sys.realtimeUrl, HOME: sys.home().home };
    const id = await submit(env, [testUrl('slow')]);
    const r = await sys.cli(['follow', id, '--json'], { env, timeoutMs: 120_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const events = lines(r);
    expect(events.some((e) => e.event === 'notice')).toBe(true);
    expect(events.at(-1)).toMatchObject({ event: 'end', status: 'COMPLETE' });
  });
});
