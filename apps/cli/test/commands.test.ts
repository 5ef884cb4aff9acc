// Every command of the built CLI against the built api on a private Redis (no scheduler: jobs
// stay QUEUED unless a command moves them).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_PASSWORD, freePort, startSystem, type RunResult, type System } from './system.js';

let sys: System;

beforeAll(async () => {
  sys = await startSystem({ apps: ['api'] });
}, 240_000); // starting the system on a loaded machine: a deadline, not an expectation
afterAll(async () => {
  await sys?.stop();
});

function json<T = any>(r: RunResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${r.code}): ${r.stdout}\nstderr: ${r.stderr}`);
  }
}

/** Exactly one error line on stderr, `error: <CODE>: <message>`. */
function errorLine(r: RunResult): { code: string; message: string } {
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  const m = /^error: ([A-Z0-9_]+): (.+)$/.exec(lines[0]!);
  expect(m, r.stderr).not.toBeNull();
  return { code: m![1]!, message: m![2]! };
}

/** A HOME with a logged-in admin session. */
async function loggedIn() {
  const h = sys.home();
  const r = await sys.cli(['login', '--username', 'admin', '--password-stdin'], { env: h.env, input: `${ADMIN_PASSWORD}\n` });
  expect(r.code, r.stderr).toBe(0);
  return h;
}

let urlSeq = 0;
const testUrl = (tag = 'video') => `http://127.0.0.1:8089/${tag}-${Date.now()}-${++urlSeq}.mp4`;

// Each test runs many CLI processes (some at once), all tests of a block at once, on a loaded
// machine: a generous timeout per test (a run that works ends long before).
describe.concurrent('help and usage errors', { timeout: 180_000 }, () => {
  it('prints help for the CLI and for each command, exit 0', async () => {
    const main = await sys.cli(['--help']);
    expect(main.code).toBe(0);
    expect(main.stdout).toMatch(/Commands:/);
    expect(main.stdout).toMatch(/Exit codes/);
    const cmds = ['login', 'logout', 'token', 'submit', 'list', 'show', 'cancel', 'retry', 'resume', 'delete', 'logs', 'follow'];
    const results = await Promise.all(cmds.map((cmd) => sys.cli([cmd, '--help'])));
    results.forEach((r, i) => {
      expect(r.code, cmds[i]).toBe(0);
      expect(r.stdout, cmds[i]).toMatch(/^Usage: dubgate /);
    });
    const h = await sys.cli(['help', 'submit']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/--idempotency-key/);
  });

  it('usage errors exit 3 with one error line (and a JSON error document with --json)', async () => {
    const cases = [
      [],
      ['frobnicate'],
      ['list', '--bogus'],
      ['list', '--dub', 'es'],
      ['list', '--limit', '0'],
      ['list', '--status', 'NOPE'],
      ['submit'],
      ['submit', 'http://x.test/a', '--format', 'huge'],
      ['submit', 'http://x.test/a', '--container', 'avi'],
      ['submit', 'http://x.test/a', '--dub', 'not a language'],
      ['submit', '--file', '/nonexistent/urls.txt'],
      ['show'],
      ['show', 'a/b'],
      ['token', 'create'],
      ['token', 'create', 'x', '--expires-days', 'ten'],
      ['token', 'frob'],
      ['follow', 'abc', '--interval', 'x'],
      ['logs', 'abc', '--level', 'loud'],
    ];
    const results = await Promise.all(cases.map((args) => sys.cli(args, { env: { DUBGATE_TOKEN: 'unused', DUBGATE_API_URL: sys.apiUrl } })));
    results.forEach((r, i) => {
      expect(r.code, cases[i]!.join(' ')).toBe(3);
      expect(errorLine(r).code, cases[i]!.join(' ')).toBe('USAGE');
    });
    const j = await sys.cli(['list', '--limit', 'x', '--json']);
    expect(j.code).toBe(3);
    expect(json(j).error).toMatchObject({ code: 'USAGE', exitCode: 3 });
  });
});

describe.concurrent('authentication and configuration', { timeout: 180_000 }, () => {
  it('login stores the session in a 0600 config file in a 0700 directory; logout forgets it', async () => {
    const h = sys.home();
    const r = await sys.cli(['login', '--username', 'admin', '--password-stdin', '--json'], { env: h.env, input: `${ADMIN_PASSWORD}\n` });
    expect(r.code, r.stderr).toBe(0);
    const doc = json(r);
    expect(doc.user).toMatchObject({ username: 'admin', role: 'admin' });
    expect(doc.configPath).toBe(h.config);
    expect(r.stdout).not.toMatch(/eyJ/); // the token is not printed
    expect(statSync(h.config).mode & 0o777).toBe(0o600);
    expect(statSync(join(h.home, '.config', 'dubgate')).mode & 0o777).toBe(0o700);

    const list = await sys.cli(['list', '--json'], { env: h.env });
    expect(list.code, list.stderr).toBe(0);
    expect(json(list)).toHaveProperty('items');

    const out = await sys.cli(['logout', '--json'], { env: h.env });
    expect(out.code, out.stderr).toBe(0);
    expect(json(out)).toMatchObject({ loggedOut: true, forgotten: true });
    expect(statSync(h.config).mode & 0o777).toBe(0o600);

    const after = await sys.cli(['list'], { env: h.env });
    expect(after.code).toBe(4);
    expect(errorLine(after).code).toBe('NOT_LOGGED_IN');
    const again = await sys.cli(['logout', '--json'], { env: h.env });
    expect(again.code).toBe(0);
    expect(json(again)).toMatchObject({ loggedOut: false });
  });

  it('login with DUBGATE_PASSWORD; a wrong password is an auth error (exit 4)', async () => {
    const h = sys.home();
    const ok = await sys.cli(['login', '--username', 'admin'], { env: { ...h.env, DUBGATE_PASSWORD: ADMIN_PASSWORD } });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/logged in as admin/);
    const bad = await sys.cli(['login', '--username', 'admin', '--password-stdin'], { env: sys.home().env, input: 'wrong-password\n' });
    expect(bad.code).toBe(4);
    expect(errorLine(bad).code).toBe('INVALID_CREDENTIALS');
    const missing = await sys.cli(['login'], { env: sys.home().env });
    expect(missing.code).toBe(3);
  });

  it('refuses a config file that group or others can read, with a clear message', async () => {
    const h = await loggedIn();
    chmodSync(h.config, 0o644);
    const r = await sys.cli(['list', '--json'], { env: h.env });
    expect(r.code).toBe(4);
    const e = errorLine(r);
    expect(e.code).toBe('CONFIG_INSECURE');
    expect(e.message).toContain(h.config);
    expect(e.message).toMatch(/chmod 600/);
    expect(json(r).error.code).toBe('CONFIG_INSECURE');
    chmodSync(h.config, 0o600);
    expect((await sys.cli(['list'], { env: h.env })).code).toBe(0);
  });

  it('a hand-written insecure config is refused too; login replaces it with a safe one', async () => {
    const h = sys.home();
    mkdirSync(join(h.home, '.config', 'dubgate'), { recursive: true });
    writeFileSync(h.config, JSON.stringify({ token: 'x' }), { mode: 0o666 });
    chmodSync(h.config, 0o666);
    expect((await sys.cli(['list'], { env: h.env })).code).toBe(4);
    const r = await sys.cli(['login', '--username', 'admin', '--password-stdin'], { env: h.env, input: ADMIN_PASSWORD });
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(h.config).mode & 0o777).toBe(0o600);
    expect((await sys.cli(['list'], { env: h.env })).code).toBe(0);
  });

  it('auth precedence: --token, then DUBGATE_TOKEN, then the config file', async () => {
    const h = await loggedIn();
    const good = await sys.token();
    const badFlag = await sys.cli(['list', '--token', 'bogus-token'], { env: h.env });
    expect(badFlag.code).toBe(4);
    errorLine(badFlag);
    const badEnv = await sys.cli(['list'], { env: { ...h.env, DUBGATE_TOKEN: 'bogus-token' } });
    expect(badEnv.code).toBe(4);
    const flagWins = await sys.cli(['list', '--token', good], { env: { ...h.env, DUBGATE_TOKEN: 'bogus-token' } });
    expect(flagWins.code, flagWins.stderr).toBe(0);
    const envOnly = await sys.cli(['list'], { env: { DUBGATE_TOKEN: good, DUBGATE_API_URL: sys.apiUrl, HOME: sys.home().home } });
    expect(envOnly.code, envOnly.stderr).toBe(0);
  });

  it('server address: --api-url wins; an unreachable server is a connection error (exit 6)', async () => {
    const port = await freePort();
    const token = await sys.token();
    const r = await sys.cli(['list', '--token', token, '--api-url', `http://127.0.0.1:${port}`], { env: { DUBGATE_API_URL: sys.apiUrl } });
    expect(r.code).toBe(6);
    expect(errorLine(r).code).toBe('CONNECTION_FAILED');
    const viaEnv = await sys.cli(['list', '--json'], { env: { DUBGATE_TOKEN: token, DUBGATE_API_URL: `http://127.0.0.1:${port}` } });
    expect(viaEnv.code).toBe(6);
    expect(json(viaEnv).error.code).toBe('CONNECTION_FAILED');
  });

  it('token create (printed once), list, use, revoke', async () => {
    const h = await loggedIn();
    const c = await sys.cli(['token', 'create', 'ci-script', '--expires-days', '30', '--json'], { env: h.env });
    expect(c.code, c.stderr).toBe(0);
    const created = json(c);
    expect(created.token).toMatch(/^dgt_/);
    expect(created.apiToken).toMatchObject({ name: 'ci-script' });
    expect(created.apiToken.expiresAt).not.toBeNull();

    const text = await sys.cli(['token', 'create', 'plain'], { env: h.env });
    expect(text.code).toBe(0);
    expect(text.stdout.trim()).toMatch(/^dgt_\S+$/);
    expect(text.stderr).toMatch(/shown only once/);

    const l = await sys.cli(['token', 'list', '--json'], { env: h.env });
    expect(l.code).toBe(0);
    const ids = json(l).items.map((t: { id: string }) => t.id);
    expect(ids).toContain(created.apiToken.id);
    expect(l.stdout).not.toContain(created.token);
    const lt = await sys.cli(['token', 'list'], { env: h.env });
    expect(lt.stdout).toMatch(/ci-script/);

    const use = await sys.cli(['list', '--json'], { env: { DUBGATE_TOKEN: created.token, DUBGATE_API_URL: sys.apiUrl } });
    expect(use.code, use.stderr).toBe(0);

    const rv = await sys.cli(['token', 'revoke', created.apiToken.id, '--json'], { env: h.env });
    expect(rv.code, rv.stderr).toBe(0);
    expect(json(rv)).toEqual({ revoked: true, id: created.apiToken.id });
    const revokedUse = await sys.cli(['list'], { env: { DUBGATE_TOKEN: created.token, DUBGATE_API_URL: sys.apiUrl } });
    expect(revokedUse.code).toBe(4);
    const twice = await sys.cli(['token', 'revoke', created.apiToken.id], { env: h.env });
    expect(twice.code).toBe(5);
    errorLine(twice);
  });
});

describe.concurrent('jobs', { timeout: 180_000 }, () => {
  it('submit with every option, several URLs, and an idempotency key', async () => {
    const h = await loggedIn();
    const url = testUrl();
    const r = await sys.cli(['submit', url, '--dub', 'es', '--format', '720p', '--container', 'mkv', '--json'], { env: h.env });
    expect(r.code, r.stderr).toBe(0);
    const doc = json(r);
    expect(doc.errors).toEqual([]);
    expect(doc.jobs).toHaveLength(1);
    expect(doc.jobs[0]).toMatchObject({ url, requestedDubbing: true, targetLang: 'es', formatPreset: '720p', outputContainer: 'mkv', status: 'QUEUED' });

    const two = await sys.cli(['submit', testUrl(), testUrl()], { env: h.env });
    expect(two.code, two.stderr).toBe(0);
    expect(two.stdout.trim().split('\n')).toHaveLength(2);
    expect(two.stdout).toMatch(/QUEUED/);

    const key = `key-${Date.now()}`;
    const u = testUrl();
    const a = json(await sys.cli(['submit', u, '--idempotency-key', key, '--json'], { env: h.env }));
    const b = json(await sys.cli(['submit', u, '--idempotency-key', key, '--json'], { env: h.env }));
    expect(b.jobs[0].id).toBe(a.jobs[0].id);
    expect(b.jobs[0].replayed).toBe(true);
  });

  it('submit --file: one job per line, comments and blank lines ignored', async () => {
    const h = await loggedIn();
    const urls = [testUrl('file'), testUrl('file'), `${testUrl('file')}#t=10`];
    const file = join(h.home, 'urls.txt');
    writeFileSync(file, `# my list\n${urls[0]}\n\n   ${urls[1]}   # second\n${urls[2]}\n# end\n`);
    const r = await sys.cli(['submit', '--file', file, '--json'], { env: h.env });
    expect(r.code, r.stderr).toBe(0);
    expect(json(r).jobs.map((j: { url: string }) => j.url)).toEqual(urls);
    const stdin = await sys.cli(['submit', '--file', '-', '--json'], { env: h.env, input: `${testUrl('stdin')}\n` });
    expect(stdin.code, stdin.stderr).toBe(0);
    expect(json(stdin).jobs).toHaveLength(1);
  });

  it('submit of a URL the API refuses: exit 1 with the API error code', async () => {
    const h = await loggedIn();
    const r = await sys.cli(['submit', 'ftp://example.com/x.mp4'], { env: h.env });
    expect(r.code).toBe(1);
    const e = errorLine(r);
    expect(e.code).toMatch(/^[A-Z_]+$/);
    expect(e.message).toContain('ftp://example.com/x.mp4');
    const mixed = await sys.cli(['submit', 'ftp://example.com/y.mp4', testUrl(), '--json'], { env: h.env });
    expect(mixed.code).toBe(1);
    const doc = json(mixed);
    expect(doc.jobs).toHaveLength(1);
    expect(doc.errors).toHaveLength(1);
    expect(doc.errors[0].url).toBe('ftp://example.com/y.mp4');
  });

  it('list with filters, search, limit and --all', async () => {
    const h = await loggedIn();
    const tag = `needle${Date.now()}`;
    const made = json(await sys.cli(['submit', testUrl(tag), testUrl(tag), testUrl(tag), '--json'], { env: h.env })).jobs;
    expect(made).toHaveLength(3);
    const s = json(await sys.cli(['list', '--search', tag, '--json'], { env: h.env }));
    expect(s.items.map((j: { id: string }) => j.id).sort()).toEqual(made.map((j: { id: string }) => j.id).sort());
    expect(s.total).toBe(3);
    const page = json(await sys.cli(['list', '--search', tag, '--limit', '1', '--json'], { env: h.env }));
    expect(page.items).toHaveLength(1);
    expect(page.nextCursor).toEqual(expect.any(String));
    const all = json(await sys.cli(['list', '--search', tag, '--limit', '1', '--all', '--json'], { env: h.env }));
    expect(all.items).toHaveLength(3);
    expect(all.nextCursor).toBeNull();
    const queued = json(await sys.cli(['list', '--status', 'QUEUED,FAILED', '--json'], { env: h.env }));
    expect(queued.items.every((j: { status: string }) => ['QUEUED', 'FAILED'].includes(j.status))).toBe(true);
    const none = json(await sys.cli(['list', '--status', 'complete', '--search', tag, '--json'], { env: h.env }));
    expect(none.items).toEqual([]);
    const text = await sys.cli(['list', '--search', tag], { env: h.env });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ID\s+STATUS/);
    expect(text.stdout).toMatch(/3 of 3 jobs/);
  });

  it('show, cancel, retry, resume, delete and not found', async () => {
    const h = await loggedIn();
    const job = json(await sys.cli(['submit', testUrl(), '--json'], { env: h.env })).jobs[0];

    const show = await sys.cli(['show', job.id, '--json'], { env: h.env });
    expect(show.code, show.stderr).toBe(0);
    const detail = json(show);
    expect(detail.job.id).toBe(job.id);
    expect(detail).toHaveProperty('media');
    expect(detail).toHaveProperty('events');
    const showText = await sys.cli(['show', job.id], { env: h.env });
    expect(showText.stdout).toMatch(new RegExp(`id:\\s+${job.id}`));
    expect(showText.stdout).toMatch(/status:\s+QUEUED/);

    const cancel = await sys.cli(['cancel', job.id, '--json'], { env: h.env });
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(json(cancel).job.status).toBe('CANCELED');
    const cancel2 = await sys.cli(['cancel', job.id], { env: h.env });
    expect(cancel2.code).toBe(1);
    expect(errorLine(cancel2).code).toBe('JOB_NOT_CANCELABLE');

    const resume = await sys.cli(['resume', job.id, '--json'], { env: h.env });
    expect(resume.code).toBe(1);
    expect(json(resume).error.code).toBe('JOB_NOT_RESUMABLE');

    const retry = await sys.cli(['retry', job.id, '--json'], { env: h.env });
    expect(retry.code, retry.stderr).toBe(0);
    expect(json(retry).job.status).toBe('QUEUED');
    const retry2 = await sys.cli(['retry', job.id], { env: h.env });
    expect(retry2.code).toBe(1);
    expect(errorLine(retry2).code).toBe('JOB_NOT_RETRYABLE');

    const del = await sys.cli(['delete', job.id, '--yes', '--json'], { env: h.env });
    expect(del.code, del.stderr).toBe(0);
    expect(json(del)).toEqual({ deleted: true, id: job.id });

    const nfCases = [['show', job.id], ['cancel', job.id], ['retry', job.id], ['resume', job.id], ['delete', job.id, '--yes'], ['logs', job.id], ['follow', job.id]];
    const nfResults = await Promise.all(nfCases.map((args) => sys.cli(args, { env: h.env })));
    nfResults.forEach((r, i) => {
      expect(r.code, nfCases[i]!.join(' ')).toBe(5);
      expect(errorLine(r).code, nfCases[i]!.join(' ')).toMatch(/NOT_FOUND/);
    });
    const nf = await sys.cli(['show', 'no-such-job', '--json'], { env: h.env });
    expect(nf.code).toBe(5);
    expect(json(nf).error.exitCode).toBe(5);

    // Not on a terminal, delete does not ask.
    const other = json(await sys.cli(['submit', testUrl(), '--json'], { env: h.env })).jobs[0];
    const plain = await sys.cli(['delete', other.id], { env: h.env });
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(/deleted job/);
  });

  it('logs: --json, --after, --level, --limit, --follow on an ended job', async () => {
    const h = await loggedIn();
    const job = json(await sys.cli(['submit', testUrl(), '--json'], { env: h.env })).jobs[0];
    expect((await sys.cli(['cancel', job.id], { env: h.env })).code).toBe(0);
    const all = json(await sys.cli(['logs', job.id, '--json'], { env: h.env }));
    expect(all.items.length).toBeGreaterThanOrEqual(2);
    expect(all.items.every((e: { jobId: string }) => e.jobId === job.id)).toBe(true);
    const first = all.items[0].id as number;
    const after = json(await sys.cli(['logs', job.id, '--after', String(first), '--json'], { env: h.env }));
    expect(after.items.length).toBe(all.items.length - 1);
    const lim = json(await sys.cli(['logs', job.id, '--limit', '1', '--json'], { env: h.env }));
    expect(lim.items).toHaveLength(1);
    const errs = json(await sys.cli(['logs', job.id, '--level', 'error', '--json'], { env: h.env }));
    expect(errs.items.every((e: { level: string }) => e.level === 'error')).toBe(true);
    const text = await sys.cli(['logs', job.id], { env: h.env });
    expect(text.stdout.trim().split('\n')).toHaveLength(all.items.length);
    const follow = await sys.cli(['logs', job.id, '--follow', '--json'], { env: h.env });
    expect(follow.code, follow.stderr).toBe(0);
    const lines = follow.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((e: { id: number }) => e.id)).toEqual(all.items.map((e: { id: number }) => e.id));
  });

  it('follow on a job that already ended exits with its code (2 for CANCELED)', async () => {
    const h = await loggedIn();
    const job = json(await sys.cli(['submit', testUrl(), '--json'], { env: h.env })).jobs[0];
    await sys.cli(['cancel', job.id], { env: h.env });
    const r = await sys.cli(['follow', job.id, '--json'], { env: h.env });
    expect(r.code, r.stderr).toBe(2);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ event: 'end', status: 'CANCELED', exitCode: 2 });
  });
});

describe.concurrent('delete on a terminal', { timeout: 180_000 }, () => {
  it('asks for confirmation unless --yes', async () => {
    const h = await loggedIn();
    const job = json(await sys.cli(['submit', testUrl(), '--json'], { env: h.env })).jobs[0];
    const no = await sys.cliTty(['delete', job.id], { env: h.env, input: 'n\r' });
    if (no === null) return; // no util-linux `script` here
    expect(no.stdout).toMatch(/delete job .* \[y\/N\]/);
    expect(no.code, no.stdout).toBe(1);
    expect(no.stdout).toMatch(/error: ABORTED: not deleted/);
    expect((await sys.cli(['show', job.id], { env: h.env })).code).toBe(0);
    const yes = await sys.cliTty(['delete', job.id], { env: h.env, input: 'y\r' });
    expect(yes!.code, yes!.stdout).toBe(0);
    expect((await sys.cli(['show', job.id], { env: h.env })).code).toBe(5);
  });
});

describe.concurrent('login on a terminal', { timeout: 180_000 }, () => {
  it('asks for the password without echoing it', async () => {
    const h = sys.home();
    const r = await sys.cliTty(['login', '--username', 'admin'], { env: h.env, input: `${ADMIN_PASSWORD}\r` });
    if (r === null) return; // no util-linux `script` here
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/password: /);
    expect(r.stdout).not.toContain(ADMIN_PASSWORD);
    expect(r.stdout).toMatch(/logged in as admin/);
    expect(statSync(h.config).mode & 0o777).toBe(0o600);
  });
});
