/**
 * The fault table (issue 9) as one bounded run: a loader submits jobs at a steady rate with
 * Idempotency-Keys (some sent twice), stage workers played by plain BullMQ workers in this
 * process (prefix 'q', valid results per contracts/stages.ts), Socket.IO clients subscribed,
 * and the faults injected one after another while the load runs. Then every accepted job must
 * reach exactly one terminal state through allowed transitions, none lost, none duplicated.
 *
 * CI runs the defaults (FAULT_JOBS=150). `pnpm --filter @dubgate/e2e test:faults` runs 1000.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { Socket } from 'socket.io-client';
import { TRANSITIONS, TERMINAL_STATES, type JobState } from '@dubgate/contracts/states';
import { openDatabase } from '@dubgate/db/open';
import { createJobsRepository } from '@dubgate/db/jobs';
import { ROOT, startSystem, waitFor, type System } from './system.js';

const JOBS = Number(process.env.FAULT_JOBS ?? 150);
const RATE = Number(process.env.FAULT_RATE ?? 3); // jobs per second
const BOUND_MS = Number(process.env.FAULT_BOUND_MS ?? 90_000); // after the load ends
const LOCK_MS = 2_000;

let system: System;
let token: string;
let otherToken: string;
let adminId: string;
const workers: Worker[] = [];
let childWorker: ChildProcess | null = null;

interface Submitted {
  key: string;
  ids: Set<string>;
  answers: number[];
}
const submitted = new Map<string, Submitted>();
const accepted = new Set<string>(); // job ids answered 201 (or inserted at the failpoint)
const statusCounts: Record<string, number> = {};
const faults: Array<{ name: string; recoveryMs: number }> = [];
/** What the api answered inside each fault window (status:milliseconds). */
const windows: Record<string, string[]> = {};
let badAnswers: string[] = [];

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

async function post(key: string, body: Record<string, unknown>, timeoutMs = 15_000) {
  const started = Date.now();
  try {
    const res = await fetch(`${system.apiUrl}/api/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'idempotency-key': key },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    const json = text ? (JSON.parse(text) as { job?: { id: string }; error?: { code?: string } }) : null;
    return { status: res.status, jobId: json?.job?.id ?? null, ms: Date.now() - started, body: json };
  } catch {
    return { status: 0, jobId: null, ms: Date.now() - started, body: null };
  }
}

function bodyFor(n: number) {
  const dub = n % 3 === 0;
  return { url: `http://127.0.0.1:8080/fault-${n}.mp4`, requestedDubbing: dub, ...(dub ? { targetLang: 'es' } : {}), outputContainer: n % 2 ? 'mkv' : 'mp4' };
}

/** Submits one job with a key, retrying with the same key until 201/200 (network errors, 503). */
async function submit(n: number): Promise<void> {
  const key = `fault-${n}-${Math.random().toString(36).slice(2, 10)}`;
  const rec: Submitted = { key, ids: new Set(), answers: [] };
  submitted.set(key, rec);
  const body = bodyFor(n);
  const sends = n % 7 === 0 ? 2 : 1; // some requests are sent twice with the same key
  for (let s = 0; s < sends; s++) {
    for (let attempt = 0; attempt < 60; attempt++) {
      const r = await post(key, body);
      rec.answers.push(r.status);
      statusCounts[r.status] = (statusCounts[r.status] ?? 0) + 1;
      if (r.status === 201 || r.status === 200) {
        if (r.jobId) rec.ids.add(r.jobId);
        if (r.jobId) accepted.add(r.jobId); // a 200 replay names the job a lost answer created
        break;
      }
      if (r.status !== 0 && r.status !== 503) {
        badAnswers.push(`POST ${key}: ${r.status} ${JSON.stringify(r.body)}`);
        break;
      }
      await sleep(300);
    }
  }
}

async function stageProcessor(job: Job) {
  const data = job.data as { jobId: string; workDir: string; outputContainer?: string; targetLang?: string };
  const dir = join(system.mediaRoot, data.workDir);
  mkdirSync(dir, { recursive: true });
  await sleep(20 + Math.random() * 60);
  switch (job.queueName) {
    case 'download':
      writeFileSync(join(dir, 'source.mp4'), 'x');
      return { mediaPath: `${data.workDir}/source.mp4`, sizeBytes: 1 };
    case 'dub':
      writeFileSync(join(dir, 'dub.m4a'), 'x');
      return { audioPath: `${data.workDir}/dub.m4a`, language: data.targetLang ?? 'es', cues: 1 };
    default: {
      const container = data.outputContainer ?? 'mp4';
      writeFileSync(join(dir, `output.${container}`), 'x');
      return { outputPath: `${data.workDir}/output.${container}`, container, sizeBytes: 1 };
    }
  }
}

function startWorkers() {
  const url = new URL(system.redisUrl);
  for (const stage of ['download', 'dub', 'mux']) {
    const w = new Worker(stage, stageProcessor, {
      prefix: 'q',
      connection: { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null },
      concurrency: 8,
      lockDuration: LOCK_MS,
      stalledInterval: 1_000,
    });
    w.on('error', () => {}); // Redis restarts are part of the run
    workers.push(w);
  }
}

async function statusOf(id: string): Promise<string | null> {
  try {
    const r = await system.api<{ job: { status: string } }>('GET', `/api/jobs/${id}`, undefined, token);
    return r.status === 200 ? r.body.job.status : null;
  } catch {
    return null;
  }
}

/** Time from injection until a job submitted after it completes (the system works end to end again). */
async function recovery(name: string, injectedAt: number, timeoutMs = 60_000): Promise<void> {
  const n = 1_000_000 + faults.length;
  await submit(n);
  const rec = [...submitted.values()].find((s) => s.key.startsWith(`fault-${n}-`))!;
  const id = [...rec.ids][0];
  expect(id, `probe job after ${name}: answers ${rec.answers.join(',')} ${badAnswers.slice(-3).join(' | ')}`).toBeTruthy();
  await waitFor(`probe job after ${name} to complete`, async () => (await statusOf(id!)) === 'COMPLETE', timeoutMs, 100);
  faults.push({ name, recoveryMs: Date.now() - injectedAt });
}

beforeAll(async () => {
  system = await startSystem({ apps: ['api', 'scheduler', 'relay', 'realtime'] });
  token = await system.token();
  const u = await system.api('POST', '/api/users', { username: 'fault-other', password: 'fault-other-password-123' }, token);
  expect(u.status).toBe(201);
  const login = await system.api<{ token: string; user?: { id: string } }>('POST', '/api/auth/login', { username: 'fault-other', password: 'fault-other-password-123' });
  otherToken = login.body.token;
  const db = openDatabase(system.dbPath);
  adminId = (db.prepare("SELECT id FROM users WHERE username = 'admin'").get() as { id: string }).id;
  db.close();
  startWorkers();
}, 300_000); // starting the system on a loaded machine: a deadline, not an expectation

afterAll(async () => {
  childWorker?.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.close(true).catch(() => {})));
  await system?.stop();
});

describe('the fault table under steady load', () => {
  it(`${JOBS} jobs, every fault injected, nothing lost or duplicated`, async () => {
    const t0 = Date.now();
    // Clients: one of ours subscribed to every accepted job, one of another user trying to.
    const ours: Socket = await system.socket(token);
    const theirs: Socket = await system.socket(otherToken);
    let reconnects = 0;
    ours.io.on('reconnect', () => reconnects++);
    const leaked: string[] = [];
    for (const ev of ['state_change', 'progress', 'log', 'error', 'job_removed']) {
      theirs.on(ev, (e: { jobId?: string }) => e?.jobId && accepted.has(e.jobId) && leaked.push(`${ev}:${e.jobId}`));
    }
    const subscribeBoth = async (id: string) => {
      if (ours.connected) await ours.timeout(3_000).emitWithAck('subscribe', [id]).catch(() => {});
      if (theirs.connected) {
        const ack = (await theirs.timeout(3_000).emitWithAck('subscribe', [id]).catch(() => null)) as { results: Array<{ accepted: boolean }> } | null;
        if (ack?.results[0]?.accepted) leaked.push(`subscribe-accepted:${id}`);
      }
    };

    // The loader: JOBS submissions at RATE per second, concurrently with the faults.
    let loaderDone = false;
    const inflight: Promise<void>[] = [];
    // Closed while the api is armed with the failpoint: only the test's own POST may reach it.
    let gate: Promise<void> = Promise.resolve();
    const loader = (async () => {
      for (let n = 0; n < JOBS; n++) {
        await gate;
        inflight.push(submit(n).then(async () => {
          const rec = [...submitted.values()].find((s) => s.key.startsWith(`fault-${n}-`));
          for (const id of rec?.ids ?? []) await subscribeBoth(id);
        }));
        await sleep(1000 / RATE);
      }
      await Promise.all(inflight);
      loaderDone = true;
    })();

    // The faults start once the load runs (a few jobs accepted), however slow the machine.
    await waitFor('the loader to get jobs accepted', () => accepted.size >= 3, 60_000, 50);

    // 1. SIGKILL the api; restart.
    let at = Date.now();
    await system.kill('api');
    await sleep(500); // downtime: the loader's requests fail meanwhile (part of the fault)
    await system.start('api');
    await recovery('api SIGKILL', at);

    // 1b. The failpoint between the SQLite commit and the enqueue: the state such a crash
    // leaves is a committed job with undelivered outbox rows. The scheduler's drainer delivers.
    at = Date.now();
    {
      const db = openDatabase(system.dbPath);
      const repo = createJobsRepository(db);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const r = repo.insertJob({ ownerId: adminId, url: `http://127.0.0.1:8080/failpoint-${i}.mp4`, requestedDubbing: i % 2 === 0, targetLang: i % 2 === 0 ? 'fr' : null, formatPreset: 'best', outputContainer: 'mp4' });
        if (r.ok && r.created) ids.push(r.job.id);
      }
      db.close();
      expect(ids).toHaveLength(5);
      for (const id of ids) accepted.add(id);
      await system.kill('api');
      await system.start('api');
      await waitFor('failpoint jobs to complete', async () => (await Promise.all(ids.map(statusOf))).every((s) => s === 'COMPLETE'), 60_000, 200);
      faults.push({ name: 'api failpoint after commit', recoveryMs: Date.now() - at });
    }

    // 1c. The same crash for real: the api armed with DUBGATE_FAILPOINT=after-commit dies right
    // after committing a new job, before enqueueing it; the client gets no answer. After a restart,
    // the same Idempotency-Key returns that one job, and it completes exactly once.
    at = Date.now();
    {
      let openGate!: () => void;
      gate = new Promise((resolve) => (openGate = resolve));
      await Promise.all([...inflight]); // everything already sent is answered by the normal api
      await system.kill('api');
      await system.start('api', { DUBGATE_FAILPOINT: 'after-commit' });
      const key = 'failpoint-real';
      // The api dies by itself right after its commit; the connection drops then (no answer).
      // Waiting for that exit (not for a client timeout) is what guarantees the commit happened.
      const died = system.exited('api');
      const crashed = await post(key, bodyFor(4_000_000), 60_000);
      expect(crashed.status, 'no answer from an api killed at the failpoint').toBe(0);
      await died;
      await system.kill('api'); // already gone: only forgets it
      await system.start('api');
      const again = await post(key, bodyFor(4_000_000));
      expect(again.status).toBe(200); // a replay: the job was committed before the crash
      accepted.add(again.jobId!);
      submitted.set(key, { key, ids: new Set([again.jobId!]), answers: [200] });
      openGate();
      await waitFor('the failpoint job to complete', async () => (await statusOf(again.jobId!)) === 'COMPLETE', 60_000, 200);
      faults.push({ name: 'api SIGKILL at the failpoint (real)', recoveryMs: Date.now() - at });
    }

    // 2. SIGKILL the scheduler mid-flight; restart (its lock expires after SCHEDULER_LOCK_TTL_MS).
    at = Date.now();
    await system.kill('scheduler');
    await sleep(1_000); // downtime (part of the fault)
    await system.start('scheduler');
    await recovery('scheduler SIGKILL', at);

    // 3. SIGKILL a stage worker (its own process) while it holds jobs; the stage runs again
    // after the lock expires.
    {
      // The in-process mux worker steps aside, and a job of our own goes through: the child worker
      // is sure to get a mux job even if the loader has already sent its last one.
      const muxWorker = workers.find((w) => w.name === 'mux')!;
      await muxWorker.pause();
      const takenIds: string[] = [];
      childWorker = spawn(process.execPath, [join(ROOT, 'e2e', 'test', 'fault-worker.mjs'), system.redisUrl, 'mux', String(LOCK_MS)], { stdio: ['ignore', 'pipe', 'inherit'] });
      childWorker.stdout!.on('data', (d: Buffer) => {
        for (const m of d.toString().matchAll(/taken (\S+)/g)) takenIds.push(m[1]!);
      });
      void submit(5_000_000);
      await waitFor('the child worker to take a job', () => takenIds.length > 0, 60_000, 50);
      at = Date.now();
      const exited = new Promise((r) => childWorker!.once('exit', r));
      childWorker.kill('SIGKILL');
      await exited;
      childWorker = null;
      muxWorker.resume();
      // The jobs it held run again once their locks expire (stalled check), and complete once.
      const held = [...new Set(takenIds)];
      await waitFor('the jobs held by the killed worker to complete', async () => (await Promise.all(held.map(statusOf))).every((st) => st === 'COMPLETE'), 60_000, 100);
      faults.push({ name: `stage worker SIGKILL (${held.length} held jobs)`, recoveryMs: Date.now() - at });
    }

    // 4. SIGKILL the relay; restart. Clients converge through the logs endpoint (checked at the end).
    at = Date.now();
    await system.kill('relay');
    await sleep(1_000); // downtime (part of the fault)
    await system.start('relay');
    await recovery('relay SIGKILL', at);

    // 5. SIGKILL the realtime node; restart on the same port: clients reconnect by themselves.
    at = Date.now();
    const before = reconnects;
    await system.kill('realtime');
    await sleep(500); // downtime (part of the fault)
    await system.start('realtime');
    await waitFor('our client to reconnect', () => reconnects > before && ours.connected, 60_000, 100);
    await recovery('realtime SIGKILL', at);

    // 6. Redis killed (SIGKILL) and restarted with its AOF: the api answers 503 fast or 201.
    at = Date.now();
    await system.killRedis();
    const duringDown: Array<{ status: number; ms: number; id: string | null }> = [];
    for (let i = 0; i < 4; i++) {
      const key = `redis-down-${i}`;
      const r = await post(key, bodyFor(2_000_000 + i));
      duringDown.push({ status: r.status, ms: r.ms, id: r.jobId });
      (windows['redis down'] ??= []).push(`${r.status}:${r.ms}ms`);
      statusCounts[r.status] = (statusCounts[r.status] ?? 0) + 1;
      if (r.status === 201 && r.jobId) {
        accepted.add(r.jobId);
        submitted.set(key, { key, ids: new Set([r.jobId]), answers: [201] });
      }
    }
    for (const d of duringDown) {
      expect([201, 503]).toContain(d.status);
      expect(d.ms).toBeLessThan(5_000);
    }
    await sleep(1_500); // downtime (part of the fault)
    await system.startRedis();
    await recovery('redis SIGKILL + AOF restart', at, 90_000);

    // 7. Redis at maxmemory with noeviction: 201 only with a stored job, else a clear 503.
    at = Date.now();
    {
      const r = new Redis(system.redisUrl, { maxRetriesPerRequest: 1 });
      const used = Number(/used_memory:(\d+)/.exec(await r.info('memory'))![1]);
      await r.config('SET', 'maxmemory', String(used + 64 * 1024));
      // fill to the limit so writes are refused
      let oom = false;
      for (let i = 0; i < 200 && !oom; i++) {
        try {
          await r.set(`fault:ballast:${i}`, 'x'.repeat(4096));
        } catch {
          oom = true;
        }
      }
      expect(oom, 'redis refuses writes at maxmemory').toBe(true);
      for (let i = 0; i < 4; i++) {
        const key = `oom-${i}`;
        const p = await post(key, bodyFor(3_000_000 + i));
        statusCounts[p.status] = (statusCounts[p.status] ?? 0) + 1;
        (windows['redis maxmemory'] ??= []).push(`${p.status}:${p.ms}ms${p.body?.error?.code ? `:${p.body.error.code}` : ''}`);
        expect([201, 503]).toContain(p.status);
        if (p.status === 201) {
          expect(await statusOf(p.jobId!)).not.toBeNull(); // never a 201 without a stored job
          accepted.add(p.jobId!);
          submitted.set(key, { key, ids: new Set([p.jobId!]), answers: [201] });
        } else {
          expect(p.body?.error?.code).toBeTruthy();
        }
      }
      await r.config('SET', 'maxmemory', '0');
      const ballast = await r.keys('fault:ballast:*');
      if (ballast.length) await r.del(...ballast);
      r.disconnect();
      await recovery('redis maxmemory noeviction', at, 90_000);
    }

    // 8. SQLite busy: another connection holds BEGIN IMMEDIATE for 3 s (busy_timeout 5 s).
    at = Date.now();
    {
      const db = openDatabase(system.dbPath);
      db.exec('BEGIN IMMEDIATE');
      const during = (async () => {
        const out: number[] = [];
        for (let i = 0; i < 3; i++) {
          const key = `busy-${i}`;
          const p = await post(key, bodyFor(4_000_000 + i));
          statusCounts[p.status] = (statusCounts[p.status] ?? 0) + 1;
          (windows['sqlite busy'] ??= []).push(`${p.status}:${p.ms}ms${p.body?.error?.code ? `:${p.body.error.code}` : ''}`);
          out.push(p.status);
          if (p.status === 201 && p.jobId) {
            accepted.add(p.jobId);
            submitted.set(key, { key, ids: new Set([p.jobId]), answers: [201] });
          } else {
            expect(p.status).toBeGreaterThanOrEqual(400);
            expect(p.status).not.toBe(500);
          }
        }
        return out;
      })();
      await sleep(3_000); // the fault: the write lock held for 3 s
      db.exec('COMMIT');
      db.close();
      await during;
      await recovery('sqlite busy (BEGIN IMMEDIATE 3 s)', at);
    }

    // The load ends; then every accepted job must be terminal within the bound.
    await loader;
    expect(loaderDone).toBe(true);
    const loadEnd = Date.now();
    let pending: string[] = [];
    await waitFor(
      'every accepted job to reach a terminal state',
      async () => {
        const db = openDatabase(system.dbPath, { readonly: true });
        try {
          const rows = db.prepare('SELECT id, state FROM jobs').all() as Array<{ id: string; state: string }>;
          const state = new Map(rows.map((r) => [r.id, r.state]));
          pending = [...accepted].filter((id) => !TERMINAL_STATES.includes(state.get(id) as JobState));
          return pending.length === 0;
        } finally {
          db.close();
        }
      },
      BOUND_MS,
      500,
    ).catch(() => undefined);

    // Audit through the database file.
    const db = openDatabase(system.dbPath);
    const rows = db.prepare('SELECT id, state FROM jobs').all() as Array<{ id: string; state: string }>;
    const state = new Map(rows.map((r) => [r.id, r.state]));
    const lost = [...accepted].filter((id) => !state.has(id) || !TERMINAL_STATES.includes(state.get(id) as JobState));
    const transitionErrors: string[] = [];
    const events = db.prepare("SELECT job_id, payload FROM job_events WHERE type = 'state_change' ORDER BY id").all() as Array<{ job_id: string; payload: string }>;
    const byJob = new Map<string, Array<{ from: JobState; to: JobState }>>();
    for (const e of events) {
      const p = JSON.parse(e.payload) as { from: JobState; to: JobState };
      (byJob.get(e.job_id) ?? byJob.set(e.job_id, []).get(e.job_id)!).push(p);
    }
    for (const id of accepted) {
      const seq = byJob.get(id) ?? [];
      let cur: JobState = 'QUEUED';
      let terminals = 0;
      const seen = new Set<string>();
      for (const { from, to } of seq) {
        if (from !== cur) transitionErrors.push(`${id}: ${from}->${to} while in ${cur}`);
        if (!TRANSITIONS[from]?.includes(to)) transitionErrors.push(`${id}: ${from}->${to} not allowed`);
        if (seen.has(`${from}->${to}`)) transitionErrors.push(`${id}: duplicated ${from}->${to}`);
        seen.add(`${from}->${to}`);
        if (TERMINAL_STATES.includes(to)) terminals++;
        cur = to;
      }
      if (state.has(id) && cur !== state.get(id)) transitionErrors.push(`${id}: events end in ${cur}, row is ${state.get(id)}`);
      if (state.has(id) && terminals !== 1) transitionErrors.push(`${id}: ${terminals} terminal transitions`);
    }
    // Idempotency: one job per key; no row beyond those we know of.
    const duplicatedKeys = [...submitted.values()].filter((s) => s.ids.size > 1).map((s) => s.key);
    const keyRows = db.prepare('SELECT idempotency_key AS k, COUNT(*) AS n FROM jobs WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key HAVING n > 1').all() as Array<{ k: string }>;
    const unknownRows = rows.filter((r) => !accepted.has(r.id));
    db.close();

    // Clients converge through GET /api/jobs/:id/logs: the terminal state_change is there.
    const sample = [...accepted].slice(0, 40);
    for (const id of sample) {
      const r = await system.api<{ items: Array<{ type: string; payload: { to?: string } | null }> }>('GET', `/api/jobs/${id}/logs?limit=500`, undefined, token);
      expect(r.status).toBe(200);
      expect(r.body.items.some((e) => e.type === 'state_change' && TERMINAL_STATES.includes(e.payload?.to as JobState))).toBe(true);
    }
    const health = await fetch(`${system.apiUrl}/healthz`);

    const summary = {
      jobsSubmitted: submitted.size,
      jobsAccepted: accepted.size,
      requests: statusCounts,
      faultsInjected: faults.length,
      faults,
      windows,
      lost: lost.length,
      duplicated: duplicatedKeys.length + keyRows.length + unknownRows.length,
      transitionErrors: transitionErrors.length,
      leakedToOtherUser: leaked.length,
      longestRecoveryMs: Math.max(...faults.map((f) => f.recoveryMs)),
      drainAfterLoadMs: Date.now() - loadEnd,
      totalMs: Date.now() - t0,
    };
    console.log(
      `FAULTS jobs=${summary.jobsSubmitted} accepted=${summary.jobsAccepted} faults=${summary.faultsInjected} lost=${summary.lost} duplicated=${summary.duplicated} ` +
        `transitionErrors=${summary.transitionErrors} leaked=${summary.leakedToOtherUser} longestRecoveryMs=${summary.longestRecoveryMs} totalMs=${summary.totalMs}`,
    );
    writeFileSync(join(ROOT, 'e2e', 'fault-results.json'), JSON.stringify({ ...summary, at: new Date().toISOString(), lostIds: lost.slice(0, 20), transitionErrorSample: transitionErrors.slice(0, 20), badAnswers: badAnswers.slice(0, 20) }, null, 2) + '\n');

    expect(badAnswers).toEqual([]);
    expect(lost).toEqual([]);
    expect(pending).toEqual([]);
    expect(transitionErrors).toEqual([]);
    expect(duplicatedKeys).toEqual([]);
    expect(keyRows).toEqual([]);
    expect(unknownRows.map((r) => r.id)).toEqual([]);
    expect(leaked).toEqual([]);
    expect(faults.length).toBe(10);
    expect(health.status).toBe(200);
  }, 600_000);
});
