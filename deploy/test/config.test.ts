/**
 * The deployment files checked by the real tools: promtool on the Prometheus configs, a real
 * compose parser (docker-compose) on docker-compose.yml, nginx -t on the committed nginx.conf,
 * logrotate on deploy/logrotate.conf; and the files kept consistent with each other (the same
 * port plan in the ecosystem, nginx and Prometheus; the same entry command in the ecosystem,
 * the Dockerfile and compose).
 */
import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { PRESETS, renderNginxConfig } from '../render-nginx.mjs';
import { APPS, ROOT, cleanupAll, commandExists, tempDir } from './helpers.js';

const run = promisify(execFile);
const deployFile = (name: string) => join(ROOT, 'deploy', name);

interface EcosystemApp {
  name: string;
  script: string;
  exec_mode: string;
  instances: number;
  increment_var?: string;
  env: Record<string, string>;
  wait_ready: boolean;
  listen_timeout: number;
  kill_timeout: number;
  kill_signal: string;
  exp_backoff_restart_delay: number;
  max_restarts: number;
  min_uptime: number;
  out_file: string;
  error_file: string;
  merge_logs: boolean;
  time: boolean;
}

/** Loads ecosystem.config.js the way PM2 does (require of the ES module) in a clean environment. */
async function loadEcosystem(env: Record<string, string>, file = join(ROOT, 'ecosystem.config.js')): Promise<EcosystemApp[]> {
  const script = `const c = require(${JSON.stringify(file)}); process.stdout.write(JSON.stringify(c.apps));`;
  const { stdout } = await run(process.execPath, ['-e', script], { env: { PATH: process.env.PATH ?? '', ...env } });
  return JSON.parse(stdout) as EcosystemApp[];
}

afterAll(async () => {
  await cleanupAll();
});

const PROD_ENV = { REDIS_URL: 'redis://127.0.0.1:6379', DB_PATH: '/srv/dubgate/gateway.db', MEDIA_ROOT: '/srv/dubgate/media' };

describe('ecosystem.config.js', () => {
  it('declares every process in fork mode with ready signal, graceful stop, backoff and JSON log files', async () => {
    const apps = await loadEcosystem({ ...PROD_ENV, SHUTDOWN_TIMEOUT_MS: '20000' });
    expect(apps.map((a) => a.name)).toEqual([...APPS]);
    for (const a of apps) {
      expect(a.script).toBe(join(ROOT, 'apps', a.name, 'dist', 'server.js'));
      expect(a.exec_mode).toBe('fork');
      expect(a.wait_ready).toBe(true);
      expect(a.listen_timeout).toBeGreaterThan(0);
      expect(a.kill_signal).toBe('SIGTERM');
      expect(a.kill_timeout).toBe(25_000);
      expect(a.exp_backoff_restart_delay).toBeGreaterThan(0);
      expect(a.max_restarts).toBeGreaterThan(0);
      expect(a.min_uptime).toBeGreaterThan(0);
      expect(a.out_file).toBe(join(ROOT, 'data', 'logs', `${a.name}-out.log`));
      expect(a.error_file).toBe(join(ROOT, 'data', 'logs', `${a.name}-err.log`));
      expect(a.merge_logs).toBe(true);
      expect(a.time).toBe(false);
      expect(a.env).toMatchObject({ NODE_ENV: 'production', ...PROD_ENV, SHUTDOWN_TIMEOUT_MS: '20000' });
    }
    const byName = Object.fromEntries(apps.map((a) => [a.name, a]));
    expect(byName.api).toMatchObject({ instances: 2, increment_var: 'API_PORT', env: { API_PORT: '3100', TRUST_PROXY: '127.0.0.1' } });
    expect(byName.realtime).toMatchObject({ instances: 2, increment_var: 'REALTIME_PORT', env: { REALTIME_PORT: '3200' } });
    expect(byName.scheduler).toMatchObject({ instances: 2, increment_var: 'SCHEDULER_PORT', env: { SCHEDULER_PORT: '9102' } });
    expect(byName.relay).toMatchObject({ instances: 1, env: { RELAY_PORT: '9104' } });
    expect(byName['worker-download']!.env.WORKER_PORT).toBe('9111');
    expect(byName['worker-dub']!.env.WORKER_PORT).toBe('9112');
    expect(byName['worker-mux']!.env.WORKER_PORT).toBe('9113');
  });

  it('moves ports and instance counts with the port-plan variables', async () => {
    const apps = await loadEcosystem({ ...PROD_ENV, API_PORT_BASE: '4100', REALTIME_PORT_BASE: '4200', REALTIME_INSTANCES: '3', RELAY_PORT: '4300' });
    const byName = Object.fromEntries(apps.map((a) => [a.name, a]));
    expect(byName.api!.env.API_PORT).toBe('4100');
    expect(byName.realtime).toMatchObject({ instances: 3, env: { REALTIME_PORT: '4200' } });
    expect(byName.relay!.env.RELAY_PORT).toBe('4300');
  });

  it('refuses to start production without REDIS_URL, DB_PATH and MEDIA_ROOT, naming each', async () => {
    // A copy in an empty folder: no .env there to fill them in.
    const dir = tempDir('ecosystem');
    copyFileSync(join(ROOT, 'ecosystem.config.js'), join(dir, 'ecosystem.config.js'));
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
    const err = await loadEcosystem({}, join(dir, 'ecosystem.config.js')).then(
      () => null,
      (e: { stderr?: string }) => e.stderr ?? '',
    );
    expect(err).toContain('REDIS_URL is required');
    expect(err).toContain('DB_PATH is required');
    expect(err).toContain('MEDIA_ROOT is required');
    // And from .env, as operators write it.
    writeFileSync(join(dir, '.env'), 'REDIS_URL=redis://127.0.0.1:6379\nDB_PATH=./data/gateway.db\nMEDIA_ROOT=./data/media\n');
    const apps = await loadEcosystem({}, join(dir, 'ecosystem.config.js'));
    expect(apps[0]!.env).toMatchObject({ REDIS_URL: 'redis://127.0.0.1:6379', DB_PATH: join(dir, 'data', 'gateway.db') });
  });
});

describe.skipIf(!commandExists('promtool'))('deploy/prometheus.yml', () => {
  it('passes promtool check config (and so does the compose variant)', async () => {
    for (const file of ['prometheus.yml', 'prometheus.compose.yml']) {
      const r = spawnSync('promtool', ['check', 'config', deployFile(file)], { encoding: 'utf8' });
      expect(r.status, `${file}: ${r.stdout}${r.stderr}`).toBe(0);
    }
  });

  it('scrapes every process of the ecosystem on its port, one job per process kind', async () => {
    const prom = parse(readFileSync(deployFile('prometheus.yml'), 'utf8')) as {
      scrape_configs: Array<{ job_name: string; metrics_path?: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const targets = (job: string) => prom.scrape_configs.find((s) => s.job_name === job)?.static_configs.flatMap((c) => c.targets) ?? [];
    const apps = await loadEcosystem(PROD_ENV);
    for (const a of apps) {
      const portVar = a.increment_var ?? Object.keys(a.env).find((k) => /_PORT$/.test(k))!;
      const base = Number(a.env[portVar]);
      const expected = Array.from({ length: a.instances }, (_, i) => `127.0.0.1:${base + i}`);
      expect(targets(a.name).sort(), a.name).toEqual(expected.sort());
    }
    const compose = parse(readFileSync(deployFile('prometheus.compose.yml'), 'utf8')) as typeof prom;
    expect(compose.scrape_configs.map((s) => s.job_name).sort()).toEqual(prom.scrape_configs.map((s) => s.job_name).sort());
  });
});

describe('deploy/nginx.conf', () => {
  it('is the template rendered with the production and compose presets (no hand edits)', () => {
    expect(readFileSync(deployFile('nginx.conf'), 'utf8')).toBe(renderNginxConfig(PRESETS.production));
    expect(readFileSync(deployFile('nginx.compose.conf'), 'utf8')).toBe(renderNginxConfig(PRESETS.compose));
  });

  it('proxies to the ports of the ecosystem', async () => {
    const conf = readFileSync(deployFile('nginx.conf'), 'utf8');
    const apps = Object.fromEntries((await loadEcosystem(PROD_ENV)).map((a) => [a.name, a]));
    for (const [name, upstream] of [['api', 'dubgate_api'], ['realtime', 'dubgate_realtime']] as const) {
      const block = new RegExp(`upstream ${upstream} \\{([^}]*)\\}`).exec(conf)![1]!;
      const servers = [...block.matchAll(/server (\S+?)[ ;]/g)].map((m) => m[1]);
      const base = Number(apps[name]!.env[apps[name]!.increment_var!]);
      expect(servers).toEqual(Array.from({ length: apps[name]!.instances }, (_, i) => `127.0.0.1:${base + i}`));
    }
  });

  it.skipIf(!commandExists('nginx'))('passes nginx -t with the project folder as prefix', () => {
    const prefix = tempDir('nginx-t');
    mkdirSync(join(prefix, 'data', 'nginx'), { recursive: true });
    mkdirSync(join(prefix, 'data', 'logs'), { recursive: true });
    const r = spawnSync('nginx', ['-t', '-p', prefix, '-c', deployFile('nginx.conf'), '-e', join(prefix, 'data', 'logs', 'nginx-error.log')], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
  });
});

/** `FROM … AS <target>` → its CMD, and the chain of stages it builds on. */
function dockerTargets(text: string): Map<string, { from: string; cmd?: string[]; body: string }> {
  const stages = new Map<string, { from: string; cmd?: string[]; body: string }>();
  const parts = text.split(/^FROM /m).slice(1);
  for (const part of parts) {
    const m = /^(\S+)\s+AS\s+(\S+)/i.exec(part);
    if (!m) continue;
    const cmd = /^CMD (\[.*\])\s*$/m.exec(part);
    stages.set(m[2]!, { from: m[1]!, body: part, ...(cmd ? { cmd: JSON.parse(cmd[1]!) as string[] } : {}) });
  }
  return stages;
}

describe('Dockerfile', () => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const stages = dockerTargets(text);
  const chain = (target: string): string[] => {
    const out: string[] = [];
    for (let t: string | undefined = target; t && stages.has(t); t = stages.get(t)!.from) out.push(t);
    return out;
  };

  it('has one target per process whose command is the one PM2 runs, as user node under tini', async () => {
    expect(text).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(stages.get('runtime')!.body).toContain('ENTRYPOINT ["/usr/bin/tini", "--"]');
    expect(stages.get('build')!.body).toContain('pnpm install --frozen-lockfile');
    expect(stages.get('build')!.body).toMatch(/pnpm --filter "@dubgate\/\$app" deploy --prod/);
    const apps = await loadEcosystem(PROD_ENV);
    for (const a of apps) {
      const stage = stages.get(a.name);
      expect(stage, `Dockerfile target ${a.name}`).toBeDefined();
      expect(stage!.cmd).toEqual(['node', `apps/${a.name}/dist/server.js`]);
      expect(`node ${a.script}`).toBe(`node ${join(ROOT, stage!.cmd![1]!)}`);
      expect(stage!.body).toMatch(/^USER node$/m);
      expect(chain(a.name)).toContain('runtime');
      // Media tools only where a stage runs them.
      const tools = chain(a.name).map((t) => stages.get(t)!.body).join('\n');
      expect(/ffmpeg/.test(tools), a.name).toBe(a.name.startsWith('worker-'));
      expect(/espeak-ng/.test(tools), a.name).toBe(a.name === 'worker-dub');
    }
  });
});

describe.skipIf(!commandExists('docker-compose'))('docker-compose.yml', () => {
  // An empty env file: the result must not depend on an operator's .env.
  const compose = async (...args: string[]) => {
    const envFile = join(tempDir('compose'), 'empty.env');
    writeFileSync(envFile, '');
    return run('docker-compose', ['--env-file', envFile, '-f', join(ROOT, 'docker-compose.yml'), ...args], { cwd: ROOT });
  };

  it('parses with a real compose parser and names every service, volume and health check', async () => {
    const services = (await compose('config', '--services')).stdout.trim().split('\n').sort();
    const expected = ['redis', 'api', 'realtime-1', 'realtime-2', 'scheduler', 'relay', 'worker-download', 'worker-dub', 'worker-mux', 'nginx', 'prometheus'];
    expect(services).toEqual([...expected].sort());
    const volumes = (await compose('config', '--volumes')).stdout.trim().split('\n').sort();
    expect(volumes).toEqual(['data', 'media', 'prometheus', 'redis']);

    const doc = parse((await compose('config')).stdout) as {
      services: Record<string, {
        command?: string[];
        build?: { target?: string };
        environment?: Record<string, string>;
        healthcheck?: { test: string[] };
        volumes?: Array<string | { source: string; target: string }>;
        depends_on?: Record<string, { condition: string }>;
        stop_grace_period?: string;
      }>;
    };
    const volumesOf = (name: string) =>
      // compose v1 writes "data:/data:rw", v2 objects { source, target }.
      (doc.services[name]!.volumes ?? []).map((v) => (typeof v === 'string' ? v.replace(/:(rw|ro)$/, '') : `${v.source}:${v.target}`));
    for (const name of expected) {
      const test = doc.services[name]!.healthcheck?.test ?? [];
      expect(test.length, `${name} has a health check`).toBeGreaterThan(0);
    }
    expect(doc.services.redis!.command).toEqual(['redis-server', '--appendonly', 'yes', '--maxmemory-policy', 'noeviction']);
    expect(doc.services.redis!.healthcheck!.test).toEqual(['CMD', 'redis-cli', 'ping']);

    const apps: Record<string, { app: string; port: number; volumes: string[] }> = {
      api: { app: 'api', port: 3000, volumes: ['data:/data', 'media:/media'] },
      'realtime-1': { app: 'realtime', port: 3001, volumes: ['data:/data'] },
      'realtime-2': { app: 'realtime', port: 3001, volumes: ['data:/data'] },
      scheduler: { app: 'scheduler', port: 3002, volumes: ['data:/data', 'media:/media'] },
      relay: { app: 'relay', port: 3003, volumes: ['data:/data'] },
      'worker-download': { app: 'worker-download', port: 3011, volumes: ['media:/media'] },
      'worker-dub': { app: 'worker-dub', port: 3012, volumes: ['media:/media'] },
      'worker-mux': { app: 'worker-mux', port: 3013, volumes: ['media:/media'] },
    };
    const dockerfile = dockerTargets(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
    for (const [name, want] of Object.entries(apps)) {
      const s = doc.services[name]!;
      // The same entry command as the image, PM2 and the tests.
      expect(s.command).toEqual(['node', `apps/${want.app}/dist/server.js`]);
      expect(s.build?.target).toBe(want.app);
      expect(dockerfile.get(want.app)!.cmd).toEqual(s.command);
      expect(s.healthcheck!.test.join(' ')).toContain(`http://127.0.0.1:${want.port}/healthz`);
      expect(s.environment).toMatchObject({ REDIS_URL: 'redis://redis:6379', DB_PATH: '/data/gateway.db', MEDIA_ROOT: '/media', HOST: '0.0.0.0' });
      expect(volumesOf(name).sort()).toEqual([...want.volumes].sort());
      expect(s.depends_on?.redis?.condition).toBe('service_healthy');
      expect(s.stop_grace_period).toBe('40s');
    }
    expect(doc.services.api!.environment!.TRUST_PROXY).toBeTruthy();
    expect(volumesOf('nginx').some((v) => v.endsWith('deploy/nginx.compose.conf:/etc/nginx/nginx.conf'))).toBe(true);
    expect(Object.keys(doc.services.nginx!.depends_on ?? {}).sort()).toEqual(['api', 'realtime-1', 'realtime-2']);
    expect(volumesOf('prometheus').some((v) => v.endsWith('deploy/prometheus.compose.yml:/etc/prometheus/prometheus.yml'))).toBe(true);
  });
});

describe.skipIf(!commandExists('logrotate'))('deploy/logrotate.conf', () => {
  it('rotates the JSON log files in place (copytruncate), so PM2 keeps writing to the same file', async () => {
    const root = tempDir('logrotate');
    mkdirSync(join(root, 'data', 'logs'), { recursive: true });
    const log = join(root, 'data', 'logs', 'api-out.log');
    writeFileSync(log, '{"level":30,"msg":"before rotation"}\n'.repeat(100));
    const conf = join(root, 'logrotate.conf');
    writeFileSync(conf, readFileSync(deployFile('logrotate.conf'), 'utf8').replaceAll('@ROOT@', root));
    const r = spawnSync('logrotate', ['--force', '--state', join(root, 'state'), conf], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    // Same file, emptied; the old lines in a dated copy beside it.
    expect(statSync(log).size).toBe(0);
    const { readdirSync } = await import('node:fs');
    const rotated = readdirSync(join(root, 'data', 'logs')).filter((f) => f.startsWith('api-out.log-'));
    expect(rotated.length).toBe(1);
    expect(readFileSync(join(root, 'data', 'logs', rotated[0]!), 'utf8')).toContain('before rotation');
  });
});
