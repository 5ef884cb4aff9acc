// /healthz, /metrics and the OpenAPI document, with Redis up (the Redis-down case is in
// redis-outage.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { FORMAT_PRESETS, OUTPUT_CONTAINERS } from '@dubgate/contracts/jobs';
import { bearer, createJob, createTestApp, loginAdmin, type TestApp } from './helpers.js';

let t: TestApp;
let token: string;

beforeAll(async () => {
  t = await createTestApp({ name: 'observability' });
  token = (await loginAdmin(t.app)).token;
});
afterAll(async () => {
  await t?.close();
});

describe('GET /healthz', () => {
  it('answers 200 in the seed shape when every dependency is up, without authentication', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    const body = res.json<Record<string, unknown>>();
    expect(Object.keys(body).sort()).toEqual(['dependencies', 'status', 'timestamp', 'uptime']);
    expect(body).toMatchObject({ status: 'ok', dependencies: { redis: 'up', sqlite: 'up', filesystem: 'up' } });
    expect(body.uptime).toEqual(expect.any(Number));
    expect(Date.parse(body.timestamp as string)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('answers 503 when MEDIA_ROOT is gone', async () => {
    const { renameSync } = await import('node:fs');
    const moved = `${t.mediaRoot}-moved`;
    renameSync(t.mediaRoot, moved);
    try {
      const res = await t.app.inject({ method: 'GET', url: '/healthz' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'degraded', dependencies: { redis: 'up', sqlite: 'up', filesystem: 'down' } });
    } finally {
      renameSync(moved, t.mediaRoot);
    }
    expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });
});

describe('GET /metrics', () => {
  let text: string;
  let jobId: string;
  beforeAll(async () => {
    jobId = (await createJob(t.app, token)).id;
    await t.app.inject({ method: 'GET', url: `/api/jobs/${jobId}`, headers: bearer(token) });
    await t.app.inject({ method: 'GET', url: '/api/jobs/00000000-0000-7000-8000-000000000000', headers: bearer(token) });
    await t.app.inject({ method: 'GET', url: '/no/such/route/abc123' });
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    text = res.body;
  });
  const lines = (name: string) => text.split('\n').filter((l) => !l.startsWith('#') && new RegExp(`^(\\w+_)?${name}[{ ]`).test(l));

  it('counts created jobs', () => {
    const [line] = lines('jobs_created_total');
    expect(line).toBeDefined();
    expect(Number(line!.split(' ').pop())).toBeGreaterThanOrEqual(1);
  });

  it('has request duration histograms labelled by route template, method and status', () => {
    const buckets = lines('http_request_duration_seconds_bucket');
    expect(buckets.length).toBeGreaterThan(0);
    expect(text).toMatch(/http_request_duration_seconds_count\{[^}]*method="POST"[^}]*route="\/api\/jobs"[^}]*status_code="201"/);
    expect(text).toMatch(/http_request_duration_seconds_count\{[^}]*method="GET"[^}]*route="\/api\/jobs\/:id"[^}]*status_code="200"/);
    expect(text).toMatch(/http_request_duration_seconds_count\{[^}]*route="\/api\/jobs\/:id"[^}]*status_code="404"/);
    // Ids and unknown paths never become label values (bounded cardinality).
    expect(text).not.toContain(jobId);
    expect(text).not.toContain('abc123');
    expect(text).toMatch(/route="unmatched"/);
  });

  it('reports queue depth per queue and state', () => {
    const waiting = lines('queue_jobs').find((l) => l.includes('queue="download"') && l.includes('state="waiting"'));
    expect(waiting).toBeDefined();
    expect(Number(waiting!.split(' ').pop())).toBeGreaterThanOrEqual(1);
    for (const queue of ['download', 'dub', 'mux']) expect(text).toContain(`queue="${queue}"`);
  });

  it('measures the SQLite group commits: writes per transaction and their time', () => {
    const [writes] = lines('sqlite_commit_writes_count');
    const [sum] = lines('sqlite_commit_writes_sum');
    expect(Number(writes!.split(' ').pop())).toBeGreaterThanOrEqual(1);
    // At least the created job's insert, in some commit.
    expect(Number(sum!.split(' ').pop())).toBeGreaterThanOrEqual(1);
    expect(Number(lines('sqlite_commit_seconds_count')[0]!.split(' ').pop())).toBe(Number(writes!.split(' ').pop()));
  });

  it('reports free bytes under MEDIA_ROOT', () => {
    const [line] = lines('media_root_free_bytes');
    expect(line).toBeDefined();
    expect(Number(line!.split(' ').pop())).toBeGreaterThan(0);
  });

  it('includes the process defaults', () => {
    expect(text).toMatch(/process_cpu_user_seconds_total/);
    expect(text).toMatch(/process_resident_memory_bytes|nodejs_heap_size_used_bytes/);
  });
});

describe('GET /api/openapi.json', () => {
  type Doc = {
    openapi: string;
    info: { title: string; version: string };
    paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }>; parameters?: Array<{ in: string; name: string; required?: boolean; schema: object }>; requestBody?: { content: Record<string, { schema: object }> } }>>;
    components: { securitySchemes: Record<string, { type: string }>; schemas?: Record<string, object> };
  };
  let doc: Doc;
  beforeAll(async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/openapi.json' });
    expect(res.statusCode).toBe(200);
    doc = res.json<Doc>();
  });

  it('is an OpenAPI 3 document with the job operations', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info.title).toEqual(expect.any(String));
    expect(doc.info.version).toEqual(expect.any(String));
    const ops = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`));
    expect(ops).toEqual(
      expect.arrayContaining([
        'POST /api/jobs',
        'GET /api/jobs',
        'GET /api/jobs/{id}',
        'DELETE /api/jobs/{id}',
        'POST /api/jobs/{id}/cancel',
        'POST /api/jobs/{id}/retry',
        'POST /api/jobs/{id}/resume',
        'GET /api/jobs/{id}/logs',
        'POST /api/auth/login',
        'POST /api/auth/logout',
        'GET /healthz',
      ]),
    );
    expect(Object.keys(doc.components.securitySchemes)).toEqual(expect.arrayContaining(['bearer', 'cookie']));
  });

  it('is well formed: path parameters declared, responses present, every schema valid JSON Schema 2020-12', () => {
    const ajv = new Ajv2020({ strict: false, validateFormats: false });
    const methods = new Set(['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace']);
    for (const [path, item] of Object.entries(doc.paths)) {
      const templated = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(item)) {
        expect(methods.has(method), `${method} ${path}`).toBe(true);
        const where = `${method.toUpperCase()} ${path}`;
        expect(Object.keys(op.responses).some((s) => /^2\d\d$/.test(s)), where).toBe(true);
        const pathParams = (op.parameters ?? []).filter((p) => p.in === 'path');
        expect(pathParams.map((p) => p.name).sort(), where).toEqual([...templated].sort());
        expect(pathParams.every((p) => p.required === true), where).toBe(true);
        const schemas = [
          ...(op.parameters ?? []).map((p) => p.schema),
          ...Object.values(op.requestBody?.content ?? {}).map((c) => c.schema),
          ...Object.values(op.responses).flatMap((r) => Object.values(r.content ?? {}).map((c) => c.schema)),
        ];
        for (const schema of schemas) expect(() => ajv.compile(schema), where).not.toThrow();
      }
    }
  });

  it('describes the create body from the same schema the route validates with', () => {
    const schema = doc.paths['/api/jobs']!.post!.requestBody!.content['application/json']!.schema as {
      additionalProperties: boolean;
      required: string[];
      properties: Record<string, { anyOf?: Array<{ enum: string[] }> }>;
    };
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(['url']);
    const values = (p: string) => schema.properties[p]!.anyOf!.flatMap((a) => a.enum);
    expect(values('formatPreset')).toEqual([...FORMAT_PRESETS]);
    expect(values('outputContainer')).toEqual([...OUTPUT_CONTAINERS]);
    expect(JSON.stringify(doc.paths['/api/jobs']!.post!.responses['201'])).toContain('"job"');
  });
});
