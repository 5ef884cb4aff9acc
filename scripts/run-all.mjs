// Foreground supervisor for `npm start`: runs every built process of the system with the
// shared environment, forwards Ctrl-C/SIGTERM, and exits when all have stopped.
// Production uses PM2 (ecosystem.config.js) instead; this is the one-command way in.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const env = { ...process.env };
const apiPort = env.API_PORT ?? '3000';
const host = env.HOST ?? '127.0.0.1';

/** The processes, in start order. Each entry is an app folder with dist/server.js. */
const realtimeBase = Number(env.REALTIME_PORT ?? '3001');
const webPort = env.WEB_PORT ?? '8080';
// The dashboard is served from its own origin; the realtime nodes must accept it.
env.REALTIME_ALLOWED_ORIGINS ??= `http://${host}:${webPort},http://localhost:${webPort}`;
const realtimeNodes = Math.max(1, Number(env.REALTIME_NODES ?? '1'));
/** Each entry runs `apps/<app>/<script>` (default dist/server.js) when that file exists. */
const processes = [
  { name: 'api', app: 'api', env: {} },
  ...Array.from({ length: realtimeNodes }, (_, i) => ({
    name: realtimeNodes === 1 ? 'realtime' : `realtime-${i + 1}`,
    app: 'realtime',
    env: { REALTIME_PORT: String(realtimeBase + i) },
  })),
  { name: 'scheduler', app: 'scheduler', env: {} },
  { name: 'relay', app: 'relay', env: {} },
  { name: 'worker-download', app: 'worker-download', env: {} },
  { name: 'worker-dub', app: 'worker-dub', env: {} },
  { name: 'worker-mux', app: 'worker-mux', env: {} },
  {
    name: 'web',
    app: 'web',
    script: 'serve.mjs',
    needs: 'dist/index.html',
    env: { PORT: webPort, API_URL: `http://127.0.0.1:${apiPort}`, REALTIME_URL: `http://127.0.0.1:${realtimeBase}` },
  },
].filter((p) => existsSync(join(root, 'apps', p.app, p.needs ?? p.script ?? 'dist/server.js')));

if (processes.length === 0) {
  console.error('[dubgate] nothing to run: no built process under apps/*/dist/server.js');
  process.exit(1);
}

const children = new Map();
let stopping = false;
let exitCode = 0;

for (const p of processes) {
  const child = spawn(process.execPath, [join(root, 'apps', p.app, p.script ?? 'dist/server.js')], {
    cwd: root,
    env: { ...env, ...p.env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.set(p.name, child);
  child.on('exit', (code, signal) => {
    children.delete(p.name);
    if (!stopping) {
      console.error(`[dubgate] ${p.name} exited unexpectedly (${signal ?? `code ${code}`}); stopping the rest`);
      exitCode = 1;
      stopAll('SIGTERM');
    }
    if (children.size === 0) process.exit(exitCode);
  });
}

const running = new Set(processes.map((p) => p.name));
const lines = [
  `running: ${processes.map((p) => p.name).join(', ')}`,
  running.has('web') && `  dashboard     http://${host}:${webPort}/   (log in as ${env.ADMIN_USERNAME ?? 'admin'})`,
  running.has('api') && `  REST API      http://${host}:${apiPort}/api   (OpenAPI: /api/openapi.json)`,
  running.has('api') && `  health        http://${host}:${apiPort}/healthz   metrics: /metrics`,
  processes.some((p) => p.app === 'realtime') &&
    `  WebSocket     ${processes.filter((p) => p.app === 'realtime').map((p) => `http://${host}:${p.env.REALTIME_PORT}/socket.io/`).join('  ')}`,
  running.has('scheduler') && `  scheduler     http://${host}:${env.SCHEDULER_PORT ?? '9102'}/healthz   metrics: /metrics`,
  running.has('relay') && `  relay         http://${host}:${env.RELAY_PORT ?? '9104'}/healthz   metrics: /metrics`,
  running.has('api') && `  log in        curl -s -X POST http://${host}:${apiPort}/api/auth/login -H 'content-type: application/json' \\`,
  running.has('api') && `                  -d '{"username":"${env.ADMIN_USERNAME ?? 'admin'}","password":"<password>"}'`,
  running.has('api') && '                (the admin password is printed once at first start, or is ADMIN_PASSWORD)',
  processes.some((p) => p.app.startsWith('worker-')) && '  workers       download, dub, mux (health on 9111, 9112, 9113)',
  '  Ctrl-C stops everything',
].filter(Boolean);
console.error(`\n${lines.map((l) => `[dubgate] ${l}`).join('\n')}\n`);

function stopAll(signal) {
  stopping = true;
  for (const child of children.values()) child.kill(signal);
}

process.on('SIGINT', () => (stopping ? process.exit(130) : stopAll('SIGTERM')));
process.on('SIGTERM', () => stopAll('SIGTERM'));
