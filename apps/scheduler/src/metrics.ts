import type { Metrics } from '@dubgate/runtime/metrics';
import { DURATION_BUCKETS_SECONDS } from '@dubgate/runtime/metrics';

export function createSchedulerMetrics(metrics: Metrics) {
  return {
    transitions: metrics.counter({ name: 'job_transitions_total', help: 'Job state transitions made by the scheduler', labelNames: ['from', 'to'] }),
    stageDuration: metrics.histogram({
      name: 'stage_duration_seconds',
      help: 'Time a worker spent on a stage (BullMQ processedOn to finishedOn)',
      labelNames: ['stage'],
      buckets: [0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
    }),
    handoff: metrics.histogram({
      name: 'stage_handoff_seconds',
      help: 'Time from a stage completing to the next stage being enqueued',
      buckets: [...DURATION_BUCKETS_SECONDS],
    }),
    retries: metrics.counter({ name: 'stage_retries_total', help: 'Failed stage attempts that BullMQ retries', labelNames: ['stage'] }),
    events: metrics.counter({ name: 'stage_events_total', help: 'BullMQ stage events read, by event and outcome', labelNames: ['event', 'outcome'] }),
    held: metrics.gauge({ name: 'jobs_held', help: 'Queued jobs held back by backpressure', labelNames: ['reason'] }),
    repairs: metrics.counter({ name: 'reconciler_repairs_total', help: 'Drift repaired between SQLite and Redis', labelNames: ['kind'] }),
    leader: metrics.gauge({ name: 'scheduler_leader', help: '1 while this scheduler holds the lock and acts' }),
    outboxPending: metrics.gauge({ name: 'outbox_pending', help: 'Outbox rows not yet delivered' }),
    freeDisk: metrics.gauge({ name: 'media_root_free_bytes', help: 'Free bytes on the filesystem holding MEDIA_ROOT' }),
  };
}

export type SchedulerMetrics = ReturnType<typeof createSchedulerMetrics>;
