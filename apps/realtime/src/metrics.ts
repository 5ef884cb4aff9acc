import { SERVER_EVENT_NAMES } from '@dubgate/contracts/ws';
import type { Counter, Gauge, Histogram, Metrics } from '@dubgate/runtime/metrics';

/** Seconds from the worker's timestamp to delivery: 1 ms up to a minute. */
export const LAG_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
]);

/** Why a client's event (or connection) was refused: the `reason` label, a closed set. */
export type RefusalReason =
  | 'rate_limited'
  | 'unknown_event'
  | 'invalid_args'
  | 'unauthenticated'
  | 'already_authenticated'
  | 'job_not_found'
  | 'too_many_subscriptions'
  | 'unavailable'
  | 'malformed_packet'
  | 'payload_too_large'
  | 'origin_not_allowed'
  | 'shutting_down';

export interface RealtimeMetrics {
  connectedSockets: Gauge<string>;
  authenticatedSockets: Gauge<string>;
  eventsDelivered: Counter<'event'>;
  eventLag: Histogram<string>;
  eventsRefused: Counter<'reason'>;
  authFailures: Counter<'code'>;
  disconnects: Counter<'reason'>;
  broadcastsMalformed: Counter<string>;
  /** Counts `n` refusals for `reason`. */
  refuse(reason: RefusalReason, n?: number): void;
  /** Counts the recipients of one broadcast packet and, when it carries a timestamp, its lag. */
  delivered(event: unknown, recipients: number, payload: unknown, now?: number): void;
}

const KNOWN_EVENTS = new Set<string>(SERVER_EVENT_NAMES);

/** Socket.IO's disconnect reasons, mapped to a closed label set. */
const DISCONNECT_REASONS = new Set([
  'transport close',
  'transport error',
  'ping timeout',
  'parse error',
  'forced close',
  'server shutting down',
  'forced server close',
  'client namespace disconnect',
  'server namespace disconnect',
]);

export function disconnectLabel(reason: string): string {
  return DISCONNECT_REASONS.has(reason) ? reason.replaceAll(' ', '_') : 'other';
}

/**
 * The gauges read their counts at scrape time, so they can never drift from the truth.
 */
export function createRealtimeMetrics(metrics: Metrics, countSockets: () => number, countAuthenticated: () => number = () => 0): RealtimeMetrics {
  const connectedSockets = metrics.gauge({
    name: 'realtime_connected_sockets',
    help: 'Sockets connected to this realtime node (authenticated or not yet)',
    collect() {
      this.set(countSockets());
    },
  });
  const authenticatedSockets = metrics.gauge({
    name: 'realtime_authenticated_sockets',
    help: 'Sockets of this node with a verified session (including those whose handshake is being checked)',
    collect() {
      this.set(countAuthenticated());
    },
  });
  const eventsDelivered = metrics.counter({
    name: 'realtime_events_delivered_total',
    help: 'Server events delivered to sockets of this node, counted per recipient',
    labelNames: ['event'] as const,
  });
  const eventLag = metrics.histogram({
    name: 'realtime_event_lag_seconds',
    help: "Time from an event's timestamp (set by the worker or relay) to its delivery by this node",
    buckets: [...LAG_BUCKETS_SECONDS],
  });
  const eventsRefused = metrics.counter({
    name: 'realtime_events_refused_total',
    help: 'Client events and connections refused, by reason',
    labelNames: ['reason'] as const,
  });
  const authFailures = metrics.counter({
    name: 'realtime_auth_failures_total',
    help: 'Failed authentications (handshake or authenticate event), by error code',
    labelNames: ['code'] as const,
  });
  const disconnects = metrics.counter({
    name: 'realtime_disconnects_total',
    help: 'Sockets disconnected, by Socket.IO reason',
    labelNames: ['reason'] as const,
  });
  const broadcastsMalformed = metrics.counter({
    name: 'realtime_broadcasts_malformed_total',
    help: 'Broadcast messages from Redis that could not be decoded and were dropped',
  });

  return {
    connectedSockets,
    authenticatedSockets,
    eventsDelivered,
    eventLag,
    eventsRefused,
    authFailures,
    disconnects,
    broadcastsMalformed,
    refuse(reason, n = 1) {
      if (n > 0) eventsRefused.inc({ reason }, n);
    },
    delivered(event, recipients, payload, now = Date.now()) {
      if (recipients <= 0) return;
      // The label set stays closed whatever arrives through Redis.
      const name = typeof event === 'string' && KNOWN_EVENTS.has(event) ? event : 'other';
      eventsDelivered.inc({ event: name }, recipients);
      const timestamp = typeof payload === 'object' && payload !== null ? (payload as { timestamp?: unknown }).timestamp : undefined;
      if (typeof timestamp !== 'string') return;
      const at = Date.parse(timestamp);
      // Clocks of other hosts may run slightly ahead: count that as no lag rather than dropping it.
      if (Number.isFinite(at)) eventLag.observe(Math.max(0, now - at) / 1000);
    },
  };
}
