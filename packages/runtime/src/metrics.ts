/**
 * Prometheus metrics per process. Each call builds its own Registry (never prom-client's
 * global one), so tests and several app instances in one process never collide.
 */
import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type CounterConfiguration,
  type GaugeConfiguration,
  type HistogramConfiguration,
} from 'prom-client';

export { Counter, Gauge, Histogram, Registry };

export type MetricKind = 'counter' | 'gauge' | 'histogram';

// Units that promtool wants spelled as base units, and abbreviations it refuses.
const NON_BASE_UNITS: Readonly<Record<string, string>> = {
  milliseconds: 'seconds',
  microseconds: 'seconds',
  nanoseconds: 'seconds',
  minutes: 'seconds',
  hours: 'seconds',
  days: 'seconds',
  kilobytes: 'bytes',
  megabytes: 'bytes',
  gigabytes: 'bytes',
  terabytes: 'bytes',
  kibibytes: 'bytes',
  mebibytes: 'bytes',
  gibibytes: 'bytes',
  bits: 'bytes',
  percent: 'ratio',
};
const UNIT_ABBREVIATIONS = new Set(['s', 'ms', 'us', 'ns', 'sec', 'secs', 'b', 'kb', 'mb', 'gb', 'tb', 'pb', 'm', 'h', 'd']);
const SNAKE = /^[a-z_][a-z0-9_]*$/;

/**
 * Problems `promtool check metrics` (or Prometheus naming practice) would raise for a metric
 * name; empty when it is fine. Colons are refused: they are for recording rules.
 */
export function lintMetric(name: string, kind: MetricKind, labelNames: readonly string[] = [], help = 'x'): string[] {
  const problems: string[] = [];
  if (!SNAKE.test(name)) problems.push(`"${name}" must be snake_case: lower-case letters, digits and _`);
  if (!help.trim()) problems.push(`"${name}" needs help text`);
  if (kind === 'counter' && !name.endsWith('_total')) problems.push(`counter "${name}" must end in _total`);
  if (kind !== 'counter' && name.endsWith('_total')) problems.push(`${kind} "${name}" must not end in _total`);
  if (/_(bucket|count|sum)$/.test(name)) problems.push(`"${name}" must not end in _bucket, _count or _sum`);
  const parts = name.split('_');
  for (const part of parts) {
    const base = NON_BASE_UNITS[part];
    if (base) problems.push(`"${name}": use the base unit ${base} instead of ${part}`);
    if (UNIT_ABBREVIATIONS.has(part)) problems.push(`"${name}": spell the unit out instead of "${part}"`);
  }
  for (const type of ['counter', 'gauge', 'histogram', 'summary']) {
    if (parts.includes(type)) problems.push(`"${name}" must not include the metric type "${type}"`);
  }
  for (const label of labelNames) {
    if (!SNAKE.test(label) || label.startsWith('__')) problems.push(`label "${label}" must be snake_case and not start with __`);
    if (label === 'le' || label === 'quantile') problems.push(`label "${label}" is reserved`);
    if (label === 'service') problems.push('label "service" is set on every metric by the registry');
  }
  return problems;
}

const PROMTOOL_REJECTED_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const;

type Opts<C> = Omit<C, 'registers'>;

export interface CreateMetricsOptions {
  /** Added as the `service` label on every series. */
  service: string;
  /** Prepended to the names given to the helpers (not to the default process metrics). */
  prefix?: string;
  /** Collect prom-client's process/Node.js metrics (CPU, memory, event loop, GC). Default true. */
  defaultMetrics?: boolean;
}

export interface Metrics {
  readonly registry: Registry;
  readonly prefix: string;
  counter<L extends string = string>(opts: Opts<CounterConfiguration<L>>): Counter<L>;
  gauge<L extends string = string>(opts: Opts<GaugeConfiguration<L>>): Gauge<L>;
  histogram<L extends string = string>(opts: Opts<HistogramConfiguration<L>>): Histogram<L>;
  /** The exposition for GET /metrics. */
  render(): Promise<{ contentType: string; body: string }>;
}

export function createMetrics({ service, prefix = 'dubgate_', defaultMetrics = true }: CreateMetricsOptions): Metrics {
  if (prefix && !SNAKE.test(prefix)) throw new TypeError(`metric prefix "${prefix}" must be snake_case`);
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  // Unprefixed on purpose: process_cpu_seconds_total etc. are what stock dashboards expect.
  if (defaultMetrics) {
    collectDefaultMetrics({ register: registry });
    // Gauges named *_total fail `promtool check metrics`; each only sums a labelled gauge
    // that stays (nodejs_active_handles, nodejs_active_requests, nodejs_active_resources).
    for (const name of PROMTOOL_REJECTED_DEFAULTS) {
      if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
    }
  }

  function prepare<C extends { name: string; help: string; labelNames?: readonly string[] }>(kind: MetricKind, opts: C): C & { name: string } {
    const name = `${prefix}${opts.name}`;
    const problems = lintMetric(name, kind, opts.labelNames ?? [], opts.help);
    if (problems.length > 0) throw new TypeError(`bad metric: ${problems.join('; ')}`);
    return { ...opts, name };
  }

  return {
    registry,
    prefix,
    counter: (opts) => new Counter({ ...prepare('counter', opts), registers: [registry] }),
    gauge: (opts) => new Gauge({ ...prepare('gauge', opts), registers: [registry] }),
    histogram: (opts) => new Histogram({ ...prepare('histogram', opts), registers: [registry] }),
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

/** Buckets (seconds) for stage and request durations: 5 ms up to 1 hour. */
export const DURATION_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
]);

/**
 * Metrics of a SQLite group commit (db's createGroupCommit `onCommit`): how many writes shared
 * each transaction and how long it held the write lock. Small batches under load mean the
 * process pays a COMMIT per request.
 */
export function groupCommitMetrics(metrics: Metrics): (writes: number, ms: number) => void {
  const writes = metrics.histogram({
    name: 'sqlite_commit_writes',
    help: 'Writes that shared one SQLite transaction (group commit)',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
  });
  const seconds = metrics.histogram({
    name: 'sqlite_commit_seconds',
    help: 'Time of one group-commit SQLite transaction, BEGIN to COMMIT',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  });
  return (n, ms) => {
    writes.observe(n);
    seconds.observe(ms / 1000);
  };
}
