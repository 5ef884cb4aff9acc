import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createMetrics, lintMetric } from '../src/metrics.js';

interface Family {
  type: string;
  help: string;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

/** A strict reader for the Prometheus text format (0.0.4): throws on any line it does not understand. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  // Values follow Go's ParseFloat, as Prometheus does: NaN and Inf in any case (prom-client writes "Nan").
  const sampleRe = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?|inf|infinity|nan))(?: -?\d+)?$/i;
  const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
      families.set(m[1]!, { type: 'untyped', help: m[2]!, samples: [] });
    } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      const family = families.get(m[1]!);
      if (!family) throw new Error(`TYPE before HELP: ${line}`);
      family.type = m[2]!;
    } else if ((m = sampleRe.exec(line))) {
      const name = m[1]!;
      const base = [...families.keys()].find((f) => name === f || (name.startsWith(f) && /^_(bucket|sum|count)$/.test(name.slice(f.length))));
      if (!base) throw new Error(`sample without family: ${line}`);
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? '').matchAll(labelRe)) labels[l[1]!] = l[2]!;
      families.get(base)!.samples.push({ name, labels, value: /nan/i.test(m[3]!) ? Number.NaN : /inf/i.test(m[3]!) ? (m[3]!.startsWith('-') ? -Infinity : Infinity) : Number(m[3]) });
    } else {
      throw new Error(`unparseable line: ${JSON.stringify(line)}`);
    }
  }
  return families;
}

describe('createMetrics', () => {
  it('builds independent registries with the same metric names', async () => {
    const a = createMetrics({ service: 'api' });
    const b = createMetrics({ service: 'scheduler' });
    const ca = a.counter({ name: 'jobs_created_total', help: 'Jobs accepted', labelNames: ['stage'] as const });
    const cb = b.counter({ name: 'jobs_created_total', help: 'Jobs accepted', labelNames: ['stage'] as const });
    ca.inc({ stage: 'download' }, 2);
    cb.inc({ stage: 'download' });

    const fa = parseExposition((await a.render()).body).get('dubgate_jobs_created_total')!;
    const fb = parseExposition((await b.render()).body).get('dubgate_jobs_created_total')!;
    expect(fa.type).toBe('counter');
    expect(fa.samples).toEqual([{ name: 'dubgate_jobs_created_total', labels: { stage: 'download', service: 'api' }, value: 2 }]);
    expect(fb.samples[0]).toMatchObject({ labels: { service: 'scheduler' }, value: 1 });
  });

  it('renders parseable text with default process metrics, gauges and histograms', async () => {
    const m = createMetrics({ service: 'relay' });
    m.gauge({ name: 'queue_depth', help: 'Waiting jobs', labelNames: ['queue'] }).set({ queue: 'download' }, 4);
    const h = m.histogram({ name: 'stage_duration_seconds', help: 'Stage run time', buckets: [0.1, 1, 10] });
    h.observe(0.5);
    h.observe(20);
    const { contentType, body } = await m.render();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parseExposition(body);
    expect(families.get('process_cpu_user_seconds_total')?.type).toBe('counter');
    expect(families.get('nodejs_eventloop_lag_seconds')?.type).toBe('gauge');
    for (const family of families.values()) {
      for (const sample of family.samples) expect(sample.labels.service).toBe('relay');
    }
    expect(families.get('dubgate_queue_depth')!.samples[0]!.value).toBe(4);
    const hist = families.get('dubgate_stage_duration_seconds')!;
    expect(hist.type).toBe('histogram');
    const count = hist.samples.find((s) => s.name === 'dubgate_stage_duration_seconds_count');
    expect(count?.value).toBe(2);
    const inf = hist.samples.find((s) => s.labels.le === '+Inf');
    expect(inf?.value).toBe(2);
  });

  it('can skip default metrics and use another prefix', async () => {
    const m = createMetrics({ service: 'w', prefix: 'worker_', defaultMetrics: false });
    m.counter({ name: 'stages_total', help: 'x' });
    expect([...parseExposition((await m.render()).body).keys()]).toEqual(['worker_stages_total']);
  });

  it('refuses names promtool would flag', () => {
    const m = createMetrics({ service: 'x', defaultMetrics: false });
    expect(() => m.counter({ name: 'jobs_created', help: 'x' })).toThrow(/must end in _total/);
    expect(() => m.gauge({ name: 'queueDepth', help: 'x' })).toThrow(/snake_case/);
    expect(() => m.gauge({ name: 'open_total', help: 'x' })).toThrow(/must not end in _total/);
    expect(() => m.histogram({ name: 'latency_milliseconds', help: 'x' })).toThrow(/base unit seconds/);
    expect(() => m.histogram({ name: 'latency_ms', help: 'x' })).toThrow(/spell the unit out/);
    expect(() => m.gauge({ name: 'depth', help: '  ' })).toThrow(/help text/);
    expect(() => m.gauge({ name: 'depth', help: 'x', labelNames: ['le'] })).toThrow(/reserved/);
    expect(() => m.gauge({ name: 'depth', help: 'x', labelNames: ['service'] })).toThrow(/service/);
    expect(() => m.gauge({ name: 'jobs_gauge', help: 'x' })).toThrow(/metric type/);
    expect(lintMetric('dubgate_http_request_duration_seconds', 'histogram', ['method', 'route'])).toEqual([]);
    expect(() => createMetrics({ service: 'x', prefix: 'Bad-' })).toThrow(/prefix/);
  });
});

// promtool ships with the Debian `prometheus` package; skipped where it is not installed.
const hasPromtool = spawnSync('promtool', ['--version']).status === 0;

describe('promtool check metrics', () => {
  it.skipIf(!hasPromtool)('accepts the whole exposition, default metrics included', async () => {
    const m = createMetrics({ service: 'api' });
    m.counter({ name: 'jobs_created_total', help: 'Jobs accepted', labelNames: ['stage'] }).inc({ stage: 'download' });
    m.gauge({ name: 'queue_depth', help: 'Waiting jobs', labelNames: ['queue'] }).set({ queue: 'dub' }, 1);
    m.histogram({ name: 'stage_duration_seconds', help: 'Stage run time' }).observe(3);
    const result = spawnSync('promtool', ['check', 'metrics'], { input: (await m.render()).body, encoding: 'utf8' });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});
