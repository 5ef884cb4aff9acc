import type { Metrics } from '@dubgate/runtime/metrics';

/** Every metric of the relay (names get the `dubgate_` prefix from createMetrics). */
export function createRelayMetrics(metrics: Metrics) {
  return {
    messages: metrics.counter({
      name: 'relay_messages_total',
      help: 'Pub/Sub messages received, valid or not, by channel',
      labelNames: ['channel'],
    }),
    refused: metrics.counter({
      name: 'relay_messages_refused_total',
      help: 'Pub/Sub messages refused: too_large, invalid_json or schema (malformed, unknown type)',
      labelNames: ['channel', 'reason'],
    }),
    dropped: metrics.counter({
      name: 'relay_messages_dropped_total',
      help: 'Valid messages not delivered (job_missing, backlog_full, no_recipients, handler_error) or not stored (not_stored: sent live without an eventId)',
      labelNames: ['channel', 'reason'],
    }),
    emitted: metrics.counter({
      name: 'relay_events_emitted_total',
      help: 'Socket.IO events emitted through the Redis emitter, by event',
      labelNames: ['event'],
    }),
    emitFailures: metrics.counter({
      name: 'relay_emit_failures_total',
      help: 'Events not handed to the realtime nodes: their fan-out publish failed, or they could not be encoded',
    }),
    coalesced: metrics.counter({
      name: 'relay_progress_coalesced_total',
      help: 'Progress updates replaced by a newer one before reaching clients',
    }),
    batchSize: metrics.histogram({
      name: 'relay_batch_size',
      help: 'Rows written per SQLite transaction: job_events rows (events) or progress snapshots (snapshots)',
      labelNames: ['kind'],
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    }),
    flushDuration: metrics.histogram({
      name: 'relay_flush_duration_seconds',
      help: 'Time spent in one SQLite write of a tick, by kind (events or snapshots)',
      labelNames: ['kind'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    }),
    flushFailures: metrics.counter({
      name: 'relay_flush_failures_total',
      help: 'SQLite writes that failed (retried on the next tick), by kind',
      labelNames: ['kind'],
    }),
    lag: metrics.histogram({
      name: 'relay_event_lag_seconds',
      help: 'Time from a message timestamp (its publisher clock) to its receipt by the relay, by channel: a growing lag means the relay falls behind',
      labelNames: ['channel'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    }),
    pending: metrics.gauge({
      name: 'relay_pending_events',
      help: 'Logs and errors received and not yet written to job_events',
    }),
  };
}

export type RelayMetrics = ReturnType<typeof createRelayMetrics>;
