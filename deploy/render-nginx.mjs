#!/usr/bin/env node
// Renders deploy/nginx.conf.template into a complete nginx.conf.
//
//   node deploy/render-nginx.mjs --out data/nginx/nginx.conf     # this host, from the environment
//   node deploy/render-nginx.mjs --listen 80 --api 127.0.0.1:3100,127.0.0.1:3101 \
//        --realtime 127.0.0.1:3200,127.0.0.1:3201,127.0.0.1:3202 --out data/nginx/nginx.conf
//   node deploy/render-nginx.mjs --preset production --out deploy/nginx.conf   # the committed files
//   node deploy/render-nginx.mjs --preset compose --out deploy/nginx.compose.conf
//
// Without a preset the upstreams follow the port plan of ecosystem.config.js, read from the
// environment: API_PORT_BASE (3100) x API_INSTANCES (2), REALTIME_PORT_BASE (3200) x
// REALTIME_INSTANCES (2); NGINX_LISTEN (8080). Options: --listen, --api, --realtime, --root
// (static files, apps/web/dist), --access-log, --error-log, --pid, --temp-dir, --login-rate
// (5r/m), --login-burst (5), --body-limit (64k). Relative paths are relative to nginx's prefix
// (-p). `npm run render` in deploy/ rewrites both committed files; a test checks they match.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const TEMPLATE = join(HERE, 'nginx.conf.template');

function range(base, count, host = '127.0.0.1') {
  return Array.from({ length: count }, (_, i) => `${host}:${base + i}`);
}

function intFrom(env, name, fallback) {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? fallback : Number.parseInt(raw, 10);
}

/** The defaults: PM2 on this host, the port plan of ecosystem.config.js, paths under the project. */
export function defaultOptions(env = process.env) {
  return {
    listen: env.NGINX_LISTEN || '8080',
    api: range(intFrom(env, 'API_PORT_BASE', 3100), intFrom(env, 'API_INSTANCES', 2)),
    realtime: range(intFrom(env, 'REALTIME_PORT_BASE', 3200), intFrom(env, 'REALTIME_INSTANCES', 2)),
    root: 'apps/web/dist',
    accessLog: 'data/logs/nginx-access.log',
    errorLog: 'data/logs/nginx-error.log',
    pid: 'data/nginx/nginx.pid',
    tempDir: 'data/nginx',
    loginRate: '5r/m',
    loginBurst: 5,
    bodyLimit: '64k',
    note: 'Generated from deploy/nginx.conf.template by deploy/render-nginx.mjs: edit the template, then render again.',
  };
}

const SAFE = /^[A-Za-z0-9_./:@[\]-]+$/;

function check(name, value) {
  const text = String(value);
  if (!SAFE.test(text)) throw new Error(`render-nginx: ${name} has characters nginx would misread: ${JSON.stringify(text)}`);
  return text;
}

function servers(name, list, extra) {
  if (!Array.isArray(list) || list.length === 0) throw new Error(`render-nginx: ${name} needs at least one server`);
  return list.map((s) => `    server ${check(name, s)}${extra};`).join('\n');
}

/** The committed configurations: deploy/nginx.conf and deploy/nginx.compose.conf. */
export const PRESETS = {
  production: defaultOptions({}),
  compose: {
    ...defaultOptions({}),
    api: ['api:3000'],
    realtime: ['realtime-1:3001', 'realtime-2:3001'],
    root: '/usr/share/nginx/html',
    accessLog: '/dev/stdout',
    errorLog: 'stderr',
    pid: '/tmp/nginx.pid',
    tempDir: '/tmp',
    note: 'Generated from deploy/nginx.conf.template by deploy/render-nginx.mjs --preset compose, for docker-compose.yml.',
  },
};

/** Returns the nginx.conf text for `options` (missing ones take the defaults). */
export function renderNginxConfig(options = {}, template = readFileSync(TEMPLATE, 'utf8')) {
  const o = { ...defaultOptions(), ...options };
  const values = {
    GENERATED_NOTE: o.note,
    LISTEN: check('listen', o.listen),
    API_SERVERS: servers('api', o.api, ' max_fails=0'),
    REALTIME_SERVERS: servers('realtime', o.realtime, ''),
    STATIC_ROOT: check('root', o.root),
    ACCESS_LOG: check('accessLog', o.accessLog),
    ERROR_LOG: check('errorLog', o.errorLog),
    PID: check('pid', o.pid),
    TEMP_DIR: check('tempDir', o.tempDir),
    LOGIN_RATE: check('loginRate', o.loginRate),
    LOGIN_BURST: check('loginBurst', o.loginBurst),
    BODY_LIMIT: check('bodyLimit', o.bodyLimit),
  };
  const out = template.replace(/\{\{([A-Z_]+)\}\}/g, (_, key) => {
    if (!(key in values)) throw new Error(`render-nginx: unknown placeholder {{${key}}}`);
    return values[key];
  });
  return out;
}

function parseArgs(argv) {
  const options = {};
  let out = null;
  const keys = {
    '--listen': 'listen',
    '--root': 'root',
    '--access-log': 'accessLog',
    '--error-log': 'errorLog',
    '--pid': 'pid',
    '--temp-dir': 'tempDir',
    '--login-rate': 'loginRate',
    '--login-burst': 'loginBurst',
    '--body-limit': 'bodyLimit',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`render-nginx: ${arg} needs a value`);
    if (arg === '--out') out = value;
    else if (arg === '--preset') {
      if (!Object.hasOwn(PRESETS, value)) throw new Error(`render-nginx: unknown preset ${value} (${Object.keys(PRESETS).join(', ')})`);
      Object.assign(options, PRESETS[value]);
    }
    else if (arg === '--api' || arg === '--realtime') options[arg.slice(2)] = value.split(',').map((s) => s.trim()).filter(Boolean);
    else if (arg in keys) options[keys[arg]] = value;
    else throw new Error(`render-nginx: unknown option ${arg}`);
    i++;
  }
  return { options, out };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const { options, out } = parseArgs(process.argv.slice(2));
    const text = renderNginxConfig(options);
    if (out) writeFileSync(out, text);
    else process.stdout.write(text);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
}
