import { describe, expect, it } from 'vitest';
import { createLogger, loggerOptions, redactSecrets } from '../src/logger.js';

function capture() {
  const lines: string[] = [];
  return {
    destination: { write: (chunk: string) => void lines.push(chunk) },
    records: () => lines.join('').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>),
  };
}

describe('createLogger', () => {
  it('writes JSON lines with service, pid and an ISO timestamp', () => {
    const out = capture();
    const log = createLogger({ name: 'scheduler', level: 'info', destination: out.destination });
    log.info({ jobId: 'j1' }, 'hello');
    log.debug('hidden at info');
    const [record, ...rest] = out.records();
    expect(rest).toHaveLength(0);
    expect(record).toMatchObject({ service: 'scheduler', pid: process.pid, jobId: 'j1', msg: 'hello', level: 30 });
    expect(record!.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(record).not.toHaveProperty('hostname');
  });

  it('redacts credentials wherever they usually appear', () => {
    const out = capture();
    const log = createLogger({ name: 'api', destination: out.destination });
    log.info(
      {
        req: { headers: { authorization: 'Bearer abc.def', cookie: 'sid=1', 'x-csrf-token': 'csrf1', accept: 'json' } },
        res: { headers: { 'set-cookie': ['sid=2'] } },
        body: { username: 'admin', password: 'hunter2', csrfToken: 'c', apiToken: 'tok' },
        token: 't',
        config: { JWT_SECRET: 'jwt-secret-value', ADMIN_PASSWORD: 'admin-pw' },
        user: { session: { token: 'nested-token' } },
      },
      'request',
    );
    const text = JSON.stringify(out.records());
    for (const secret of ['abc.def', 'sid=1', 'sid=2', 'csrf1', 'hunter2', '"tok"', '"t"', 'jwt-secret-value', 'admin-pw', 'nested-token']) {
      expect(text).not.toContain(secret);
    }
    const [record] = out.records();
    expect(record!.req.headers.accept).toBe('json');
    expect(record!.body.username).toBe('admin');
    expect(record!.body.password).toBe('[Redacted]');
    expect(record!.req.headers.authorization).toBe('[Redacted]');
  });

  it('serializes errors under err', () => {
    const out = capture();
    createLogger({ name: 'relay', destination: out.destination }).error({ err: new Error('boom') }, 'failed');
    expect(out.records()[0]!.err).toMatchObject({ type: 'Error', message: 'boom' });
  });
});

describe('loggerOptions', () => {
  it('gives Fastify the same shape', () => {
    const opts = loggerOptions({ name: 'api', level: 'debug', pid: 7 });
    expect(opts.level).toBe('debug');
    expect(opts.base).toEqual({ service: 'api', pid: 7 });
    const censored = opts.formatters!.log!({ req: { headers: { Authorization: 'Bearer x' } }, body: { password: 'p' } });
    expect(censored).toEqual({ req: { headers: { Authorization: '[Redacted]' } }, body: { password: '[Redacted]' } });
  });
});

describe('redactSecrets', () => {
  it('returns the same object, unchanged, when there is nothing to censor', () => {
    const obj = { jobId: 'j1', nested: { a: 1, list: [{ b: 2 }] }, headers: { accept: 'json' } };
    expect(redactSecrets(obj)).toBe(obj);
  });

  it('copies along the censored paths and never changes the caller\'s object', () => {
    const shared = { keep: true };
    const obj = { shared, body: { password: 'hunter2', username: 'u' }, deep: { a: { b: { token: 't' } } } };
    const out = redactSecrets(obj);
    expect(out).toEqual({ shared, body: { password: '[Redacted]', username: 'u' }, deep: { a: { b: { token: '[Redacted]' } } } });
    expect(out.shared).toBe(shared);
    expect(obj.body.password).toBe('hunter2');
    expect(obj.deep.a.b.token).toBe('t');
  });

  it('censors secret headers in any case, only inside headers objects', () => {
    const out = redactSecrets({ headers: { Cookie: 'c', 'X-CSRF-Token': 'x', accept: 'a' }, cookie: 'not a header' });
    expect(out).toEqual({ headers: { Cookie: '[Redacted]', 'X-CSRF-Token': '[Redacted]', accept: 'a' }, cookie: 'not a header' });
  });

  it('stops past four levels of keys and leaves class instances to their serializers', () => {
    const deeper = { a: { b: { c: { d: { password: 'p' } } } } };
    expect(redactSecrets({ a: { b: { c: { password: 'p' } } } })).toEqual({ a: { b: { c: { password: '[Redacted]' } } } });
    expect(redactSecrets(deeper)).toBe(deeper);
    const err = Object.assign(new Error('boom'), { code: 'E' });
    const withErr = { err };
    expect(redactSecrets(withErr)).toBe(withErr);
  });
});

describe('loggerOptions, still', () => {
  it('keeps the base fields', () => {
    expect(loggerOptions({ name: 'x' }).base).toMatchObject({ service: 'x' });
  });
});
