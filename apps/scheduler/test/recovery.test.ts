// Nothing is lost and nothing happens twice: an outbox row left by a killed process, a scheduler
// killed mid-flight, events missed while it was down, stages lost in Redis, two schedulers.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import type { Job as BullJob } from 'bullmq';
import { stageJobId, type DownloadPayload, type DubPayload, type MuxPayload } from '@dubgate/contracts/stages';
import { STAGES, type Stage } from '@dubgate/contracts/states';
import {
  createHarness,
  duplicates,
  metricValue,
  PIPELINE_WITHOUT_DUB,
  PIPELINE_WITH_DUB,
  results,
  sleep,
  WAIT_MS,
  waitFor,
  type Harness,
} from './helpers.js';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

/** Workers that take a little while, so a run has jobs in every state at any moment. */
function slowWorkers(harness: Harness, calls: Record<Stage, string[]> = { download: [], dub: [], mux: [] }) {
  for (const stage of STAGES) {
    harness.worker(
      stage,
      async (job: BullJob) => {
        calls[stage].push(job.id!);
        await sleep(20 + Math.floor(Math.random() * 100));
        return (results[stage] as (d: unknown) => unknown)(job.data as DownloadPayload | DubPayload | MuxPayload);
      },
      { concurrency: 3 },
    );
  }
  return calls;
}

/**
 * The longest time this process could not run (its timers fire late by that much) while `fn`
 * ran: a bound on a lock handover is the lock's times plus this, since a tick cannot fire while
 * the event loop is blocked by a loaded machine.
 */
async function measuringStalls(fn: () => Promise<void>): Promise<number> {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  try {
    await fn();
    return delay.max / 1e6;
  } finally {
    delay.disable();
  }
}

function expectPipeline(harness: Harness, jobs: Array<{ id: string; requestedDubbing: boolean }>) {
  for (const j of jobs) {
    const t = harness.transitions(j.id);
    expect(duplicates(t), `job ${j.id}`).toEqual([]);
    expect(t, `job ${j.id}`).toEqual(j.requestedDubbing ? PIPELINE_WITH_DUB : PIPELINE_WITHOUT_DUB);
  }
}

describe('the outbox', () => {
  it('a row left by a process killed between commit and enqueue is enqueued by the drainer, once', async () => {
    h = await createHarness('outbox-orphan');
    // What the api commits; the process dies before delivering it.
    await h.api(); // creates the admin who owns the job
    const ownerId = h.db.prepare('SELECT id FROM users LIMIT 1').pluck().get() as string;
    const inserted = h.jobs.insertJob({
      ownerId,
      url: 'https://videos.example.com/watch/killed',
      requestedDubbing: false,
      targetLang: null,
      formatPreset: 'best',
      outputContainer: 'mp4',
    });
    if (!inserted.ok || !inserted.created) throw new Error('insert failed');
    const id = inserted.job.id;
    const queueJobId = stageJobId(id, 'download', 0);
    const state = await h.subscribe('events:state');
    const calls = { download: [] as string[], dub: [] as string[], mux: [] as string[] };
    slowWorkers(h, calls);
    // Proves a negative (nobody enqueued it before a scheduler runs): no event to wait for.
    await sleep(200);
    expect(calls.download).toEqual([]);

    const s = h.scheduler();
    s.scheduler.start();
    const job = await h.waitForState(id, 'COMPLETE');
    expect(calls.download).toEqual([queueJobId]);
    expect(job.outputPath).toBe(`${id}/output.mp4`);
    expect(h.transitions(id)).toEqual(PIPELINE_WITHOUT_DUB);
    // Enqueued exactly once: one 'added' in BullMQ's record, every outbox row delivered.
    const added = (await h.redis.xrange(`${h.queuePrefix}:download:events`, '-', '+')).filter(
      ([, f]) => f[1] === 'added' && f[3] === queueJobId,
    );
    expect(added).toHaveLength(1);
    // The last transition's publish is marked delivered just after its commit.
    await expect.poll(() => h.db.prepare('SELECT count(*) FROM outbox').pluck().get(), { timeout: WAIT_MS }).toBe(0);
    // The job_added message the api never sent went out too.
    await expect.poll(() => state.messages.some((m) => m.jobId === id && m.type === 'job_added'), { timeout: WAIT_MS }).toBe(true);
  });
});

describe('restarts', () => {
  it('a scheduler killed mid-flight: its successor finishes every job, none advanced twice', async () => {
    h = await createHarness('killed');
    const first = h.scheduler({ lockTtlMs: 1_000 });
    first.scheduler.start();
    slowWorkers(h);
    const created = await Promise.all(Array.from({ length: 16 }, (_, i) => h.createJob({ requestedDubbing: i % 2 === 0 })));
    // Kill it while jobs are spread over the pipeline.
    await waitFor(() => created.some((j) => h.job(j.id).status === 'COMPLETE'), WAIT_MS, 'a first job complete');
    const spread = new Set(created.map((j) => h.job(j.id).status));
    await first.kill();
    expect(spread.size).toBeGreaterThan(1);
    await sleep(300); // workers finish what they hold; nobody reads their outcomes

    const second = h.scheduler({ lockTtlMs: 1_000 });
    second.scheduler.start();
    for (const j of created) await h.waitForState(j.id, 'COMPLETE');
    expectPipeline(h, created);
    // Rows the dying scheduler committed but could not deliver go out through the successor.
    await expect.poll(() => h.db.prepare('SELECT count(*) FROM outbox').pluck().get(), { timeout: WAIT_MS }).toBe(0);
  });

  it('events missed while the scheduler was down (stream trimmed away) are repaired by the reconciler', async () => {
    h = await createHarness('missed');
    const first = h.scheduler();
    first.scheduler.start();
    // Downloads start, then wait until the scheduler is gone.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    h.worker(
      'download',
      async (job: BullJob) => {
        await gate;
        return results.download(job.data as DownloadPayload);
      },
      { concurrency: 10 },
    );
    const created = await Promise.all(Array.from({ length: 6 }, (_, i) => h.createJob({ requestedDubbing: i % 2 === 0 })));
    for (const j of created) await h.waitForState(j.id, 'DOWNLOADING');
    await first.stop();

    release();
    await waitFor(
      async () => (await h.redis.zcard(`${h.queuePrefix}:download:completed`)) === created.length,
      WAIT_MS,
      'downloads finished while the scheduler was down',
    );
    // The record of those completions is gone.
    await h.redis.del(...STAGES.map((st) => `${h.queuePrefix}:${st}:events`));

    const second = h.scheduler({ reconcileGraceMs: 200 });
    second.scheduler.start();
    // Counted while no dub or mux worker runs: later, a pass may also replay a dub or mux
    // completion that the event loop (slow under load) has not handled within the 200 ms grace.
    for (const j of created) await h.waitForState(j.id, 'DOWNLOADED');
    await second.scheduler.reconcileNow(); // passes run one at a time: the one that replayed has finished
    const metrics = (await second.metrics.render()).body;
    expect(metricValue(metrics, 'dubgate_reconciler_repairs_total', { kind: 'completion_replayed' })).toBe(created.length);
    h.worker('dub');
    h.worker('mux');
    for (const j of created) await h.waitForState(j.id, 'COMPLETE');
    expectPipeline(h, created);
  });

  it('a stage lost in Redis is enqueued again; a BullMQ job whose job is gone is removed', async () => {
    h = await createHarness('lost');
    const s = h.scheduler({ reconcileIntervalMs: 60_000, reconcileGraceMs: 200 });
    const created = await h.createJob();
    const queueJobId = stageJobId(created.id, 'download', 0);
    // The api answers after at most 2 s even if its enqueue is still under way: wait for it, or
    // it would land after the removal below.
    await h.delivered(created.id);
    // Redis lost the stage job (flushed, failover without persistence...).
    await s.scheduler.stageQueues.queues.download.remove(queueJobId);
    // And a stage job of a job that no longer exists.
    await s.scheduler.stageQueues.enqueue('download', {
      jobId: '01900000-0000-7000-8000-000000000000',
      generation: 0,
      workDir: '01900000-0000-7000-8000-000000000000',
      url: 'https://videos.example.com/watch/ghost',
      formatPreset: 'best',
      wantSubtitles: false,
    });
    // Real time must pass: the reconciler leaves jobs younger than reconcileGraceMs (200) alone.
    await sleep(300);
    const report = (await s.scheduler.reconcileNow()) as { repairs: Record<string, number> };
    expect(report.repairs).toEqual({ stage_requeued: 1, orphan_removed: 1 });
    expect(await s.scheduler.stageQueues.queues.download.getJob(queueJobId)).toBeDefined();
    expect(await s.scheduler.stageQueues.queues.download.getJob(stageJobId('01900000-0000-7000-8000-000000000000', 'download', 0))).toBeUndefined();
    // A second pass finds nothing left to repair.
    expect(((await s.scheduler.reconcileNow()) as { repairs: Record<string, number> }).repairs).toEqual({});
    expect(metricValue((await s.metrics.render()).body, 'dubgate_reconciler_repairs_total')).toBe(2);

    s.scheduler.start();
    h.worker('download');
    h.worker('mux');
    await h.waitForState(created.id, 'COMPLETE');
    expect(h.transitions(created.id)).toEqual(PIPELINE_WITHOUT_DUB);
  });
});

describe('leadership', () => {
  it('two schedulers started at once: one acts, the other takes over within the lock TTL when it dies', async () => {
    h = await createHarness('two');
    const a = h.scheduler({ lockTtlMs: 1_000 });
    const b = h.scheduler({ lockTtlMs: 1_000 });
    a.scheduler.start();
    b.scheduler.start();
    await waitFor(() => a.scheduler.isLeader() || b.scheduler.isLeader(), WAIT_MS, 'a leader');
    await sleep(700); // several lock ticks: still exactly one (a negative: no event to wait for)
    expect([a, b].filter((x) => x.scheduler.isLeader())).toHaveLength(1);
    const [leader, standby] = a.scheduler.isLeader() ? [a, b] : [b, a];
    expect(metricValue((await leader.metrics.render()).body, 'dubgate_scheduler_leader')).toBe(1);
    expect(metricValue((await standby.metrics.render()).body, 'dubgate_scheduler_leader')).toBe(0);

    slowWorkers(h);
    const created = await Promise.all(Array.from({ length: 12 }, (_, i) => h.createJob({ requestedDubbing: i % 3 === 0 })));
    await waitFor(() => created.some((j) => h.job(j.id).status === 'COMPLETE'), WAIT_MS, 'a first job complete');
    // The standby has done nothing so far.
    expect(metricValue((await standby.metrics.render()).body, 'dubgate_job_transitions_total')).toBe(0);

    const killedAt = Date.now();
    const stalledMs = await measuringStalls(async () => {
      await leader.kill();
      await waitFor(() => standby.scheduler.isLeader(), WAIT_MS, 'takeover');
    });
    // When the standby took the lock (its log line), not when this test's polling noticed.
    const takeover = standby.log.lines.find((l) => l.msg === 'acquired scheduler leadership')!.at - killedAt;
    // TTL plus one retry interval, with slack, plus the time this process was stalled.
    expect(takeover, `stalled ${stalledMs.toFixed(0)} ms`).toBeLessThan(1_000 + 600 + stalledMs);

    for (const j of created) await h.waitForState(j.id, 'COMPLETE');
    expectPipeline(h, created);
    expect(metricValue((await standby.metrics.render()).body, 'dubgate_job_transitions_total')).toBeGreaterThan(0);
  });

  it('a scheduler stopped gracefully hands over at once', async () => {
    h = await createHarness('handover');
    const a = h.scheduler({ lockTtlMs: 3_000 });
    a.scheduler.start();
    await waitFor(() => a.scheduler.isLeader(), WAIT_MS, 'a leads');
    const b = h.scheduler({ lockTtlMs: 3_000 });
    b.scheduler.start();
    await sleep(300); // a negative (b does not take a held lock): no event to wait for
    expect(b.scheduler.isLeader()).toBe(false);
    const stoppedAt = Date.now();
    const stalledMs = await measuringStalls(async () => {
      await a.stop();
      expect(a.scheduler.isLeader()).toBe(false);
      await waitFor(() => b.scheduler.isLeader(), WAIT_MS, 'b takes over');
    });
    // When b took the lock (its log line), not when this test's polling noticed.
    const tookOver = b.log.lines.find((l) => l.msg === 'acquired scheduler leadership')!.at;
    // One retry interval (ttl / 3), not the TTL, plus the time this process was stalled.
    expect(tookOver - stoppedAt, `stalled ${stalledMs.toFixed(0)} ms`).toBeLessThan(1_500 + stalledMs);
  });
});
