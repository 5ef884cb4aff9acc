import type { Database } from '@dubgate/db/open';
import type { JobsRepository } from '@dubgate/db/jobs';
import type { OutboxRepository } from '@dubgate/db/outbox';
import type { StageQueues } from '@dubgate/queues/stage-queues';
import type { OutboxDelivery } from '@dubgate/queues/outbox-delivery';
import { ACTIVE_STATES, STAGES, STAGE_STATES, nextStage, type Stage } from '@dubgate/contracts/states';
import { parseStageJobId, stageJobId } from '@dubgate/contracts/stages';
import { stageEnqueue } from '@dubgate/contracts/stage-registry';
import type { Job } from '@dubgate/contracts/jobs';
import type { StageEvent } from './stage-event-reader.js';
import type { OutcomeResult } from './outcomes.js';
import type { SchedulerMetrics } from './metrics.js';

/**
 * Repairs drift between SQLite (the truth about jobs) and BullMQ (the work): a stage lost in
 * Redis is enqueued again; an outcome the scheduler missed (trimmed stream, scheduler down)
 * is replayed from BullMQ's job record; BullMQ jobs of deleted, finished or superseded jobs are
 * removed. Each repair is logged and counted.
 */
export interface ReconcilerDeps {
  db: Database;
  jobs: JobsRepository;
  outbox: Pick<OutboxRepository, 'add' | 'get'>;
  stageQueues: Pick<StageQueues, 'queues'>;
  delivery: OutboxDelivery;
  handle: (e: StageEvent) => Promise<OutcomeResult>;
  /** True while downloads are held: a QUEUED job without a BullMQ job is then expected. */
  downloadsHeld: () => boolean;
  metrics: SchedulerMetrics;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** Jobs younger than this are left alone: their writer may still be delivering. */
  graceMs?: number;
  clock?: () => number;
}

export interface ReconcileReport {
  checked: number;
  repairs: Record<string, number>;
}

const PAGE = 200;

export function createReconciler(deps: ReconcilerDeps) {
  const { jobs, log, metrics } = deps;
  const graceMs = deps.graceMs ?? 10_000;
  const clock = deps.clock ?? Date.now;

  function repaired(report: ReconcileReport, kind: string, detail: object) {
    report.repairs[kind] = (report.repairs[kind] ?? 0) + 1;
    metrics.repairs.inc({ kind });
    log.info({ repair: kind, ...detail }, 'reconciler repaired drift');
  }

  async function requeue(job: Job, stage: Stage, report: ReconcileReport) {
    if (stage === 'download' && deps.downloadsHeld()) return;
    // The payload a lost stage run needs, rebuilt from SQLite; null when a media row is missing.
    const enqueue = stageEnqueue(stage, job, { media: jobs.listMedia(job.id), checkpoint: jobs.getCheckpoint(job.id) });
    if (!enqueue) return;
    const ids = deps.outbox.add([{ kind: 'enqueue', jobId: job.id, payload: enqueue }]);
    const items = ids.map((id) => deps.outbox.get(id)).filter((r) => r !== null);
    await deps.delivery.deliver(items);
    repaired(report, 'stage_requeued', { jobId: job.id, stage, queueJobId: enqueue.queueJobId });
  }

  async function checkActiveJob(job: Job, report: ReconcileReport) {
    const stage = nextStage({ state: job.status, requestedDubbing: job.requestedDubbing });
    if (!stage) return;
    const queueJobId = stageJobId(job.id, stage, job.generation);
    const queue = deps.stageQueues.queues[stage];
    // State first, then the record: read the other way round, a run finishing in between looks
    // 'completed' with the returnvalue still missing, and would be replayed as an invalid result.
    const state = await queue.getJobState(queueJobId);
    const bull = state === 'unknown' ? null : await queue.getJob(queueJobId);
    if (!bull) {
      // Only when the id is unknown: a run removed after we read its state is caught next pass.
      if (state === 'unknown') await requeue(job, stage, report);
      return;
    }
    const synthetic = (event: string, fields: Record<string, string>): StageEvent => ({
      stage,
      id: `${clock()}-0`,
      event,
      jobId: queueJobId,
      fields: { event, jobId: queueJobId, ...fields },
    });
    if (state === 'completed') {
      const result = await deps.handle(synthetic('completed', { returnvalue: JSON.stringify(bull.returnvalue ?? null) }));
      if (result === 'applied') repaired(report, 'completion_replayed', { jobId: job.id, stage });
    } else if (state === 'failed') {
      const result = await deps.handle(synthetic('failed', { failedReason: bull.failedReason ?? 'failed' }));
      if (result === 'applied') repaired(report, 'failure_replayed', { jobId: job.id, stage });
    } else if (state === 'active' && job.status !== STAGE_STATES[stage].running) {
      const result = await deps.handle(synthetic('active', { prev: 'waiting' }));
      if (result === 'applied') repaired(report, 'start_replayed', { jobId: job.id, stage });
    }
  }

  /** BullMQ jobs waiting for a job that is gone, finished, or on a newer generation. */
  async function removeOrphans(report: ReconcileReport) {
    for (const stage of STAGES) {
      const queue = deps.stageQueues.queues[stage];
      const waiting = await queue.getJobs(['waiting', 'delayed', 'prioritized', 'paused'], 0, 999);
      for (const bull of waiting) {
        if (!bull?.id) continue;
        const parsed = parseStageJobId(bull.id);
        if (!parsed) continue;
        const job = jobs.getJob(parsed.jobId);
        const current = job && job.generation === parsed.generation && nextStage({ state: job.status, requestedDubbing: job.requestedDubbing }) === stage;
        if (current) continue;
        if (job && clock() - Date.parse(job.updatedAt) < graceMs) continue;
        await bull.remove().catch(() => undefined);
        repaired(report, 'orphan_removed', { queueJobId: bull.id, stage });
      }
    }
  }

  async function runOnce(): Promise<ReconcileReport> {
    const report: ReconcileReport = { checked: 0, repairs: {} };
    let after: string | null = null;
    for (;;) {
      const page = jobs.listJobsInStates(ACTIVE_STATES, PAGE, after);
      if (page.length === 0) break;
      for (const job of page) {
        after = job.id;
        // Leave fresh jobs to their writer (the api delivers its own outbox rows).
        if (clock() - Date.parse(job.updatedAt) < graceMs) continue;
        report.checked += 1;
        try {
          await checkActiveJob(job, report);
        } catch (err) {
          log.warn({ err, jobId: job.id }, 'reconciling a job failed; will try again');
        }
      }
    }
    await removeOrphans(report).catch((err: unknown) => log.warn({ err }, 'orphan sweep failed'));
    return report;
  }

  // One pass at a time: overlapping passes (the loop and reconcileNow()) would repair and
  // count the same drift twice.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    run(): Promise<ReconcileReport> {
      const pass = queue.then(runOnce);
      queue = pass.catch(() => undefined);
      return pass;
    },
  };
}
