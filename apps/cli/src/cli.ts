#!/usr/bin/env node
/**
 * dubgate: command line client of the dubgate gateway. A client of the public REST and
 * WebSocket API only. See README.md (apps/cli) and `dubgate --help`.
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { ApiToken, JobListResponse, LoginResponse, LogsResponse } from '@dubgate/contracts/api';
import type { CreateJobBody, FormatPreset, Job, JobDetail, JobEventRecord, LogLevel, OutputContainer } from '@dubgate/contracts/jobs';
import type { JobState } from '@dubgate/contracts/states';
import { ApiClient, jobPath } from './client.js';
import { configPath, readConfig, writeConfig, type CliConfig } from './config.js';
import { CliError, EXIT, UsageError } from './errors.js';
import { followJob } from './follow.js';
import { formatBytes, jobDetails, jobLine, jobProgressText, table } from './format.js';
import { COMMAND_HELP, MAIN_HELP } from './help.js';
import { ask, askSecret, readStdin } from './prompt.js';

// Kept here (not imported at run time) so the CLI needs no workspace package; checked against
// the contracts' types.
const FORMAT_PRESETS = ['best', 'bestvideo+bestaudio', '1080p', '720p', '480p', 'audio-only', 'smallest'] as const satisfies readonly FormatPreset[];
const OUTPUT_CONTAINERS = ['mp4', 'mkv', 'webm', 'mov'] as const satisfies readonly OutputContainer[];
const JOB_STATES = ['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'DUBBING', 'DUBBED', 'MUXING', 'COMPLETE', 'FAILED', 'CANCELED'] as const satisfies readonly JobState[];
const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const satisfies readonly LogLevel[];
const LANGUAGE_TAG = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/;
const TERMINAL: ReadonlySet<string> = new Set(['COMPLETE', 'FAILED', 'CANCELED']);

const DEFAULT_API_URL = 'http://127.0.0.1:3000';
const DEFAULT_REALTIME_URL = 'http://127.0.0.1:3001';

const OPTIONS = {
  json: { type: 'boolean' },
  token: { type: 'string' },
  'api-url': { type: 'string' },
  'realtime-url': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  // login
  username: { type: 'string' },
  'password-stdin': { type: 'boolean' },
  // token create
  'expires-days': { type: 'string' },
  // submit
  dub: { type: 'string' },
  format: { type: 'string' },
  container: { type: 'string' },
  file: { type: 'string' },
  'idempotency-key': { type: 'string' },
  // list
  status: { type: 'string' },
  search: { type: 'string' },
  limit: { type: 'string' },
  all: { type: 'boolean' },
  // delete
  yes: { type: 'boolean', short: 'y' },
  // logs
  after: { type: 'string' },
  level: { type: 'string' },
  follow: { type: 'boolean' },
  // follow
  interval: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

type OptionName = keyof typeof OPTIONS;
const GLOBAL_OPTIONS: OptionName[] = ['json', 'token', 'api-url', 'realtime-url', 'help'];
const COMMAND_OPTIONS: Record<string, OptionName[]> = {
  help: [],
  login: ['username', 'password-stdin'],
  logout: [],
  token: ['expires-days'],
  submit: ['dub', 'format', 'container', 'file', 'idempotency-key'],
  list: ['status', 'search', 'limit', 'all'],
  show: [],
  cancel: [],
  retry: [],
  resume: [],
  delete: ['yes'],
  logs: ['after', 'level', 'limit', 'follow'],
  follow: ['interval'],
};

type Values = { [K in OptionName]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

interface Ctx {
  values: Values;
  args: string[];
  json: boolean;
  env: NodeJS.ProcessEnv;
}

/** One JSON document (--json) or text, on stdout. */
function emit(ctx: Ctx, doc: unknown, text: () => string): void {
  if (ctx.json) process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  else {
    const t = text();
    if (t) process.stdout.write(t.endsWith('\n') ? t : `${t}\n`);
  }
}

function note(ctx: Ctx, text: string): void {
  if (!ctx.json) process.stderr.write(`${text}\n`);
}

// ---------------------------------------------------------------- settings

function makeSettings(ctx: Ctx) {
  const path = configPath(ctx.env);
  let cached: CliConfig | undefined;
  const config = () => (cached ??= readConfig(path));
  const apiUrl = () => ctx.values['api-url'] ?? ctx.env.DUBGATE_API_URL ?? config().apiUrl ?? DEFAULT_API_URL;
  const realtimeUrl = () => ctx.values['realtime-url'] ?? ctx.env.DUBGATE_REALTIME_URL ?? config().realtimeUrl ?? DEFAULT_REALTIME_URL;
  /** --token, then $DUBGATE_TOKEN, then the config file. */
  const token = (): { token: string; source: 'flag' | 'env' | 'config' } | null => {
    if (ctx.values.token !== undefined) {
      if (!ctx.values.token) throw new UsageError('--token is empty');
      return { token: ctx.values.token, source: 'flag' };
    }
    if (ctx.env.DUBGATE_TOKEN) return { token: ctx.env.DUBGATE_TOKEN, source: 'env' };
    const c = config();
    if (!c.token) return null;
    if (c.expiresAt && Date.parse(c.expiresAt) <= Date.now()) {
      throw new CliError('SESSION_EXPIRED', `the stored session expired at ${c.expiresAt}: run \`dubgate login\``, EXIT.AUTH);
    }
    return { token: c.token, source: 'config' };
  };
  const client = (auth = true) => {
    const url = apiUrl();
    if (!/^https?:\/\//i.test(url)) throw new UsageError(`the API URL must start with http:// or https:// (got ${url})`);
    if (!auth) return new ApiClient({ apiUrl: url });
    const t = token();
    if (!t) throw new CliError('NOT_LOGGED_IN', 'no credentials: run `dubgate login`, or pass --token / set DUBGATE_TOKEN', EXIT.AUTH);
    return new ApiClient({ apiUrl: url, token: t.token });
  };
  return { path, config, apiUrl, realtimeUrl, token, client };
}

// ---------------------------------------------------------------- argument helpers

function positional(ctx: Ctx, index: number, name: string): string {
  const v = ctx.args[index];
  if (v === undefined || v === '') throw new UsageError(`missing <${name}>; see \`dubgate ${ctx.args[0] ?? ''} --help\``.replace('  ', ' '));
  return v;
}

function noMoreArgs(ctx: Ctx, count: number): void {
  if (ctx.args.length > count) throw new UsageError(`unexpected argument: ${ctx.args[count]}`);
}

function intOption(ctx: Ctx, name: OptionName, min: number, max: number): number | undefined {
  const raw = ctx.values[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^\d+$/.test(raw)) throw new UsageError(`--${name} must be a whole number (got ${JSON.stringify(raw)})`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}`);
  return n;
}

function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`);
  return value as T;
}

// ---------------------------------------------------------------- commands

async function cmdLogin(ctx: Ctx): Promise<number> {
  noMoreArgs(ctx, 1);
  const s = makeSettings(ctx);
  const tty = Boolean(process.stdin.isTTY);
  let username = ctx.values.username ?? ctx.env.DUBGATE_USERNAME;
  if (!username) {
    if (!tty) throw new UsageError('give --username (or set DUBGATE_USERNAME)');
    username = (await ask('username: ')).trim();
  }
  let password: string | undefined;
  if (ctx.values['password-stdin']) {
    password = (await readStdin()).split(/\r?\n/)[0];
  } else if (ctx.env.DUBGATE_PASSWORD) {
    password = ctx.env.DUBGATE_PASSWORD;
  } else if (tty) {
    password = await askSecret('password: ');
  } else {
    throw new UsageError('give --password-stdin (or set DUBGATE_PASSWORD), or run on a terminal');
  }
  if (!username || !password) throw new UsageError('username and password must not be empty');

  // Resolve the URLs before anything is written; an unreadable old config is replaced.
  let old: CliConfig = {};
  try {
    old = s.config();
  } catch (err) {
    if (!(err instanceof CliError) || !['CONFIG_INSECURE', 'CONFIG_INVALID'].includes(err.code)) throw err;
    note(ctx, `note: replacing ${s.path} (${err.code})`);
  }
  const apiUrl = ctx.values['api-url'] ?? ctx.env.DUBGATE_API_URL ?? old.apiUrl ?? DEFAULT_API_URL;
  const realtimeUrl = ctx.values['realtime-url'] ?? ctx.env.DUBGATE_REALTIME_URL ?? old.realtimeUrl;
  const api = new ApiClient({ apiUrl });
  const res = (await api.request<LoginResponse>('POST', '/api/auth/login', { body: { username, password }, auth: false })).body;
  const next: CliConfig = { apiUrl, ...(realtimeUrl ? { realtimeUrl } : {}), token: res.token, expiresAt: res.expiresAt, username: res.user.username };
  writeConfig(s.path, next);
  emit(ctx, { user: res.user, expiresAt: res.expiresAt, apiUrl, configPath: s.path }, () => `logged in as ${res.user.username} (${res.user.role}) at ${apiUrl}; session stored in ${s.path}, expires ${res.expiresAt}`);
  return EXIT.OK;
}

async function cmdLogout(ctx: Ctx): Promise<number> {
  noMoreArgs(ctx, 1);
  const s = makeSettings(ctx);
  const t = s.token();
  if (!t) {
    emit(ctx, { loggedOut: false, reason: 'not logged in' }, () => 'not logged in');
    return EXIT.OK;
  }
  let serverError: CliError | null = null;
  try {
    await s.client().request('POST', '/api/auth/logout');
  } catch (err) {
    // An expired or already revoked session is as good as logged out.
    if (!(err instanceof CliError) || err.exitCode !== EXIT.AUTH) serverError = err instanceof CliError ? err : new CliError('LOGOUT_FAILED', String(err));
  }
  if (t.source === 'config') {
    const c = s.config();
    const { token: _t, expiresAt: _e, username: _u, ...rest } = c;
    writeConfig(s.path, rest);
  }
  if (serverError) throw serverError;
  emit(ctx, { loggedOut: true, forgotten: t.source === 'config' }, () => (t.source === 'config' ? `logged out; token removed from ${s.path}` : 'logged out'));
  return EXIT.OK;
}

async function cmdToken(ctx: Ctx): Promise<number> {
  const sub = positional(ctx, 1, 'create|list|revoke');
  const s = makeSettings(ctx);
  if (ctx.values['expires-days'] !== undefined && sub !== 'create') throw new UsageError('--expires-days applies to `token create` only');
  if (sub === 'create') {
    const name = positional(ctx, 2, 'name');
    noMoreArgs(ctx, 3);
    const days = intOption(ctx, 'expires-days', 1, 3650);
    const res = (await s.client().request<{ token: string; apiToken: ApiToken }>('POST', '/api/auth/tokens', { body: { name, ...(days ? { expiresInDays: days } : {}) } })).body;
    emit(ctx, res, () => res.token);
    note(ctx, `created API token ${res.apiToken.id} "${res.apiToken.name}"${res.apiToken.expiresAt ? `, expires ${res.apiToken.expiresAt}` : ''}; it is shown only once: store it now`);
    return EXIT.OK;
  }
  if (sub === 'list') {
    noMoreArgs(ctx, 2);
    const res = await s.client().get<{ items: ApiToken[] }>('/api/auth/tokens');
    emit(ctx, res, () =>
      res.items.length === 0
        ? 'no API tokens'
        : table([['ID', 'NAME', 'CREATED', 'LAST USED', 'EXPIRES'], ...res.items.map((t) => [t.id, t.name, t.createdAt, t.lastUsedAt ?? '-', t.expiresAt ?? 'never'])]),
    );
    return EXIT.OK;
  }
  if (sub === 'revoke') {
    const id = positional(ctx, 2, 'id');
    noMoreArgs(ctx, 3);
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new UsageError(`not a token id: ${JSON.stringify(id)}`);
    await s.client().request('DELETE', `/api/auth/tokens/${id}`);
    emit(ctx, { revoked: true, id }, () => `revoked API token ${id}`);
    return EXIT.OK;
  }
  throw new UsageError(`unknown token command: ${sub} (create, list or revoke)`);
}

/** URLs from a file: one per line, blank lines and lines starting with # ignored. */
export function parseUrlList(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    // A trailing " # comment" (a '#' right after a URL character is a fragment).
    const hash = line.search(/\s#/);
    if (hash !== -1) line = line.slice(0, hash).trim();
    if (line) out.push(line);
  }
  return out;
}

async function cmdSubmit(ctx: Ctx): Promise<number> {
  const urls = ctx.args.slice(1);
  if (ctx.values.file !== undefined) {
    let text: string;
    if (ctx.values.file === '-') text = await readStdin();
    else {
      try {
        text = readFileSync(ctx.values.file, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read --file ${ctx.values.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    urls.push(...parseUrlList(text));
  }
  if (urls.length === 0) throw new UsageError('give at least one URL, or --file <path>; see `dubgate submit --help`');
  const format = oneOf('format', ctx.values.format, FORMAT_PRESETS);
  const container = oneOf('container', ctx.values.container, OUTPUT_CONTAINERS);
  const dub = ctx.values.dub;
  if (dub !== undefined && !LANGUAGE_TAG.test(dub)) throw new UsageError(`--dub must be a language tag such as es or pt-BR (got ${JSON.stringify(dub)})`);
  const key = ctx.values['idempotency-key'];
  if (key !== undefined && !/^[\x21-\x7E]{1,190}$/.test(key)) throw new UsageError('--idempotency-key must be 1-190 printable ASCII characters without spaces');

  const client = makeSettings(ctx).client();
  const jobs: Array<Job & { replayed?: boolean }> = [];
  const errors: Array<{ url: string; code: string; message: string; exitCode: number }> = [];
  for (const [i, url] of urls.entries()) {
    const body: CreateJobBody = { url };
    if (dub) Object.assign(body, { requestedDubbing: true, targetLang: dub });
    if (format) body.formatPreset = format;
    if (container) body.outputContainer = container;
    const headers: Record<string, string> = {};
    if (key !== undefined) headers['idempotency-key'] = urls.length > 1 ? `${key}-${i + 1}` : key;
    try {
      const res = await client.request<{ job: Job }>('POST', '/api/jobs', { body, headers });
      const replayed = res.headers.get('idempotent-replayed') === 'true';
      jobs.push(replayed ? { ...res.body.job, replayed } : res.body.job);
      if (!ctx.json) process.stdout.write(`${jobLine(res.body.job)}${replayed ? '  (existing job: same idempotency key)' : ''}\n`);
    } catch (err) {
      // Without credentials or a server, the other URLs cannot fare better.
      if (!(err instanceof CliError) || err.exitCode === EXIT.AUTH || err.exitCode === EXIT.CONNECTION) throw err;
      errors.push({ url, code: err.code, message: err.message, exitCode: err.exitCode });
      if (!ctx.json) process.stderr.write(`error: ${err.code}: ${err.message} (${url})\n`);
    }
  }
  if (ctx.json) emit(ctx, { jobs, errors: errors.map(({ exitCode: _x, ...e }) => e) }, () => '');
  if (errors.length === 0) return EXIT.OK;
  const codes = new Set(errors.map((e) => e.exitCode));
  return errors.length === urls.length && codes.size === 1 ? [...codes][0]! : EXIT.FAILURE;
}

async function cmdList(ctx: Ctx): Promise<number> {
  noMoreArgs(ctx, 1);
  const q = new URLSearchParams();
  if (ctx.values.status !== undefined) {
    const states = ctx.values.status.split(',').map((x) => x.trim().toUpperCase()).filter(Boolean);
    for (const st of states) oneOf('status', st, JOB_STATES);
    if (states.length === 0) throw new UsageError('--status needs at least one state');
    q.set('status', states.join(','));
  }
  if (ctx.values.search !== undefined) {
    if (ctx.values.search.length < 1 || ctx.values.search.length > 200) throw new UsageError('--search must be 1-200 characters');
    q.set('search', ctx.values.search);
  }
  const limit = intOption(ctx, 'limit', 1, 200);
  if (limit !== undefined) q.set('limit', String(limit));
  const client = makeSettings(ctx).client();
  let page = await client.get<JobListResponse>(`/api/jobs?${q}`);
  const items = [...page.items];
  if (ctx.values.all) {
    while (page.nextCursor) {
      q.set('cursor', page.nextCursor);
      page = await client.get<JobListResponse>(`/api/jobs?${q}`);
      items.push(...page.items);
    }
  }
  const doc: JobListResponse = { items, total: page.total, totalExact: page.totalExact, nextCursor: page.nextCursor };
  emit(ctx, doc, () => {
    if (items.length === 0) return 'no jobs';
    const rows = [['ID', 'STATUS', 'PROGRESS', 'CREATED', 'URL'], ...items.map((j) => [j.id, j.status, jobProgressText(j) || '-', j.createdAt.replace(/\.\d+Z$/, 'Z'), j.url])];
    const more = doc.nextCursor ? ` (more: --all, or --limit)` : '';
    return `${table(rows)}\n${items.length} of ${doc.total}${doc.totalExact ? '' : '+'} jobs${more}`;
  });
  return EXIT.OK;
}

function eventLine(e: JobEventRecord): string {
  return `#${e.id}  ${e.createdAt}  ${e.level.padEnd(5)}  ${e.type.padEnd(12)}  ${e.message}`;
}

async function cmdShow(ctx: Ctx): Promise<number> {
  const id = positional(ctx, 1, 'id');
  noMoreArgs(ctx, 2);
  const detail = await makeSettings(ctx).client().get<JobDetail>(jobPath(id));
  emit(ctx, detail, () => {
    const parts = [jobDetails(detail.job)];
    if (detail.media.length) {
      parts.push('', 'media:');
      for (const m of detail.media) {
        const dims = m.width && m.height ? ` ${m.width}x${m.height}` : '';
        const codecs = [m.videoCodec, m.audioCodec].filter(Boolean).join('/');
        parts.push(`  ${m.kind.padEnd(12)} ${m.path}  ${formatBytes(m.sizeBytes)}${dims}${codecs ? ` ${codecs}` : ''}${m.durationSec ? ` ${m.durationSec}s` : ''}${m.title ? `  "${m.title}"` : ''}`);
      }
    }
    if (detail.events.length) {
      parts.push('', `events${detail.eventsTruncated ? ' (most recent; `dubgate logs` for all)' : ''}:`);
      for (const e of detail.events) parts.push(`  ${eventLine(e)}`);
    }
    return parts.join('\n');
  });
  return EXIT.OK;
}

async function cmdControl(ctx: Ctx, op: 'cancel' | 'retry' | 'resume'): Promise<number> {
  const id = positional(ctx, 1, 'id');
  noMoreArgs(ctx, 2);
  const res = await makeSettings(ctx).client().post<{ job: Job }>(jobPath(id, `/${op}`));
  emit(ctx, res, () => jobLine(res.job));
  return EXIT.OK;
}

async function cmdDelete(ctx: Ctx): Promise<number> {
  const id = positional(ctx, 1, 'id');
  noMoreArgs(ctx, 2);
  const path = jobPath(id);
  const client = makeSettings(ctx).client();
  if (!ctx.values.yes && process.stdin.isTTY) {
    const { job } = await client.get<JobDetail>(path);
    const answer = (await ask(`delete job ${job.id} (${job.status}, ${job.url}) and its files? [y/N] `)).trim().toLowerCase();
    if (answer !== 'y' && answer !== 'yes') throw new CliError('ABORTED', 'not deleted', EXIT.FAILURE);
  }
  await client.request('DELETE', path);
  emit(ctx, { deleted: true, id }, () => `deleted job ${id}`);
  return EXIT.OK;
}

async function cmdLogs(ctx: Ctx): Promise<number> {
  const id = positional(ctx, 1, 'id');
  noMoreArgs(ctx, 2);
  const path = jobPath(id, '/logs');
  let after = intOption(ctx, 'after', 0, Number.MAX_SAFE_INTEGER);
  const max = intOption(ctx, 'limit', 1, 1_000_000);
  const level = oneOf('level', ctx.values.level, LOG_LEVELS);
  const follow = Boolean(ctx.values.follow);
  const client = makeSettings(ctx).client();
  const items: JobEventRecord[] = [];
  let count = 0;
  const fetchPage = async () => {
    const q = new URLSearchParams();
    if (after !== undefined) q.set('after', String(after));
    q.set('limit', String(Math.min(500, max === undefined ? 500 : max - count)));
    if (level) q.set('level', level);
    return client.get<LogsResponse>(`${path}?${q}`);
  };
  const print = (e: JobEventRecord) => {
    count++;
    if (follow && ctx.json) process.stdout.write(`${JSON.stringify(e)}\n`);
    else if (ctx.json) items.push(e);
    else process.stdout.write(`${eventLine(e)}\n`);
  };
  let nextAfter: number | null = null;
  // Everything there is now.
  for (;;) {
    if (max !== undefined && count >= max) break;
    const page = await fetchPage();
    for (const e of page.items) print(e);
    const last = page.items.at(-1);
    if (last) after = last.id;
    nextAfter = page.nextAfter;
    if (page.nextAfter === null || page.items.length === 0) break;
  }
  if (!follow) {
    if (ctx.json) emit(ctx, { items, nextAfter }, () => '');
    return EXIT.OK;
  }
  // --follow: keep polling until the job has ended and nothing new came.
  for (;;) {
    if (max !== undefined && count >= max) return EXIT.OK;
    const { job } = await client.get<JobDetail>(jobPath(id));
    const ended = TERMINAL.has(job.status);
    let got = 0;
    for (;;) {
      const page = await fetchPage();
      for (const e of page.items) print(e);
      got += page.items.length;
      const last = page.items.at(-1);
      if (last) after = last.id;
      if (page.nextAfter === null || page.items.length === 0 || (max !== undefined && count >= max)) break;
    }
    if (ended && got === 0) return EXIT.OK;
    if (!ended) await new Promise((r) => setTimeout(r, 1000));
  }
}

async function cmdFollow(ctx: Ctx): Promise<number> {
  const id = positional(ctx, 1, 'id');
  noMoreArgs(ctx, 2);
  jobPath(id);
  let pollMs = 3000;
  if (ctx.values.interval !== undefined) {
    const n = Number(ctx.values.interval);
    if (!Number.isFinite(n) || n < 0.2 || n > 600) throw new UsageError('--interval must be a number of seconds between 0.2 and 600');
    pollMs = Math.round(n * 1000);
  }
  const s = makeSettings(ctx);
  const client = s.client();
  const realtimeUrl = s.realtimeUrl();
  return followJob({
    api: client,
    realtimeUrl,
    jobId: id,
    json: ctx.json,
    tty: !ctx.json && Boolean(process.stdout.isTTY),
    pollMs,
    out: process.stdout,
    err: process.stderr,
  });
}

// ---------------------------------------------------------------- main

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!.replace(/\. To specify a positional.*$/, ''));
  }
  const values = parsed.values as Values;
  const args = parsed.positionals;
  const ctx: Ctx = { values, args, json: Boolean(values.json), env };
  const command = args[0];

  if (command === undefined) {
    if (values.help) {
      process.stdout.write(`${MAIN_HELP}\n`);
      return EXIT.OK;
    }
    throw new UsageError('no command given; see `dubgate --help`');
  }
  if (command === 'help') {
    const topic = args[1];
    if (topic !== undefined && !COMMAND_HELP[topic]) throw new UsageError(`unknown command: ${topic}; see \`dubgate --help\``);
    process.stdout.write(`${topic ? COMMAND_HELP[topic] : MAIN_HELP}\n`);
    return EXIT.OK;
  }
  const allowed = COMMAND_OPTIONS[command];
  if (!allowed) throw new UsageError(`unknown command: ${command}; see \`dubgate --help\``);
  if (values.help) {
    process.stdout.write(`${COMMAND_HELP[command]}\n`);
    return EXIT.OK;
  }
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option') continue;
    const name = t.name as OptionName;
    if (!GLOBAL_OPTIONS.includes(name) && !allowed.includes(name)) {
      throw new UsageError(`option --${name} does not apply to \`${command}\`; see \`dubgate ${command} --help\``);
    }
  }

  switch (command) {
    case 'login':
      return cmdLogin(ctx);
    case 'logout':
      return cmdLogout(ctx);
    case 'token':
      return cmdToken(ctx);
    case 'submit':
      return cmdSubmit(ctx);
    case 'list':
      return cmdList(ctx);
    case 'show':
      return cmdShow(ctx);
    case 'cancel':
    case 'retry':
    case 'resume':
      return cmdControl(ctx, command);
    case 'delete':
      return cmdDelete(ctx);
    case 'logs':
      return cmdLogs(ctx);
    case 'follow':
      return cmdFollow(ctx);
    default:
      throw new UsageError(`unknown command: ${command}`);
  }
}

function exit(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

const argv = process.argv.slice(2);
main(argv).then(exit, (err: unknown) => {
  const e =
    err instanceof CliError
      ? err
      : new CliError('INTERNAL', err instanceof Error ? err.message : String(err), EXIT.FAILURE);
  const message = e.message.replace(/\s*\n\s*/g, ' ');
  process.stderr.write(`error: ${e.code}: ${message}\n`);
  if (argv.includes('--json')) process.stdout.write(`${JSON.stringify({ error: { code: e.code, message, exitCode: e.exitCode } })}\n`);
  exit(e.exitCode);
});
