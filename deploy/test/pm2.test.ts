/**
 * PM2 from the workspace with the project's ecosystem.config.js: every process starts and
 * reports ready, a process killed with SIGKILL comes back, `pm2 reload api` under load through
 * nginx fails no request, and `pm2 delete all` + `pm2 kill` leave nothing running. PM2_HOME,
 * the logs, the database and Redis live in a temp dir; the ports come from the ecosystem's
 * port-plan variables, set to free ports.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  APPS,
  ROOT,
  baseEnv,
  cleanupAll,
  commandExists,
  freePortRange,
  http,
  isBuilt,
  login,
  onCleanup,
  startNginx,
  startRedis,
  tempDir,
  waitFor,
  type Nginx,
} from './helpers.js';

const run = promisify(execFile);
const PM2 = join(ROOT, 'node_modules', '.bin', 'pm2');
const missing = ['nginx', 'redis-server'].filter((c) => !commandExists(c));
if (!existsSync(PM2)) missing.push('pm2 (workspace devDependency: run pnpm install)');
if (missing.length) console.warn(`SKIPPED PM2 tests: ${missing.join(', ')} not installed`);

// Every process must be built; DEPLOY_TEST_ALLOW_UNBUILT=1 runs the ones that are (development only).
const built = APPS.filter(isBuilt);
const unbuilt = APPS.filter((a) => !isBuilt(a));
const allowUnbuilt = process.env.DEPLOY_TEST_ALLOW_UNBUILT === '1';
if (unbuilt.length && allowUnbuilt) console.warn(`PM2 tests run without the unbuilt ${unbuilt.join(', ')}`);

const ADMIN_PASSWORD = 'deploy-test-admin-password';

interface Pm2Proc {
  name: string;
  pm_id: number;
  pid: number;
  pm2_env: Record<string, any> & { status: string; restart_time: number };
}

function alive(pid: number): boolean {
  if (!pid) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3 is the state; a zombie has exited and only waits to be reaped.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

// Per test: above the sum of its waits (deadlines, reached only when something is wrong).
describe.skipIf(missing.length > 0)('PM2 with ecosystem.config.js', { timeout: 240_000 }, () => {
  let env: NodeJS.ProcessEnv;
  let dir: string;
  let nginx: Nginx;
  let ports: Record<string, number[]>;
  const pm2 = (...args: string[]) => run(PM2, args, { cwd: ROOT, env, timeout: 90_000, maxBuffer: 16 << 20 });
  const jlist = async (): Promise<Pm2Proc[]> => JSON.parse((await pm2('jlist')).stdout) as Pm2Proc[];
  let startMs = 0;

  beforeAll(async () => {
    if (unbuilt.length && !allowUnbuilt) throw new Error(`not built: ${unbuilt.join(', ')}: build everything first`);
    dir = tempDir('pm2');
    const redis = await startRedis(dir);
    onCleanup(() => redis.stop());
    const [api, realtime, scheduler, relay, download, dub, mux] = [
      await freePortRange(2),
      await freePortRange(2),
      await freePortRange(2),
      await freePortRange(1),
      await freePortRange(1),
      await freePortRange(1),
      await freePortRange(1),
    ] as [number, number, number, number, number, number, number];
    ports = {
      api: [api, api + 1],
      realtime: [realtime, realtime + 1],
      scheduler: [scheduler, scheduler + 1],
      relay: [relay],
      'worker-download': [download],
      'worker-dub': [dub],
      'worker-mux': [mux],
    };
    env = baseEnv({
      PM2_HOME: join(dir, 'pm2'),
      LOG_DIR: join(dir, 'logs'),
      REDIS_URL: redis.url,
      DB_PATH: join(dir, 'data', 'gateway.db'),
      MEDIA_ROOT: join(dir, 'media'),
      JWT_SECRET: randomBytes(32).toString('hex'),
      ADMIN_PASSWORD,
      SHUTDOWN_TIMEOUT_MS: '5000',
      API_PORT_BASE: String(api),
      REALTIME_PORT_BASE: String(realtime),
      REALTIME_INSTANCES: '2',
      SCHEDULER_PORT_BASE: String(scheduler),
      RELAY_PORT: String(relay),
      WORKER_DOWNLOAD_PORT: String(download),
      WORKER_DUB_PORT: String(dub),
      WORKER_MUX_PORT: String(mux),
    });
    // Whatever happens, the daemon and its processes go.
    onCleanup(async () => {
      if (existsSync(join(dir, 'pm2', 'pm2.pid'))) await pm2('kill').catch(() => {});
    });
    nginx = await startNginx({ dir: join(dir, 'nginx'), api: ports.api!, realtime: ports.realtime! });
    onCleanup(() => nginx.stop());

    const t0 = Date.now();
    const only = unbuilt.length ? ['--only', built.join(',')] : [];
    await pm2('start', 'ecosystem.config.js', ...only);
    startMs = Date.now() - t0;
  }, 240_000); // starting every process on a loaded machine: a deadline, not an expectation

  afterAll(async () => {
    await cleanupAll();
  });

  it('starts every process in fork mode; each reports ready and serves /healthz', async () => {
    const list = await jlist();
    const count = (name: string) => list.filter((p) => p.name === name).length;
    const expected: Record<string, number> = { api: 2, realtime: 2, scheduler: 2, relay: 1, 'worker-download': 1, 'worker-dub': 1, 'worker-mux': 1 };
    for (const app of built) expect(count(app), app).toBe(expected[app]);
    for (const p of list) {
      expect(p.pm2_env.status, `${p.name} ${p.pm_id}`).toBe('online');
      expect(p.pm2_env.exec_mode).toBe('fork_mode');
      expect(p.pm2_env.wait_ready).toBe(true);
      expect(p.pm2_env.kill_timeout).toBe(10_000);
      expect(p.pm2_env.pm_exec_path).toBe(join(ROOT, 'apps', p.name, 'dist', 'server.js'));
    }
    // wait_ready: `pm2 start` returned once every process said 'ready', long before listen_timeout (30 s).
    expect(startMs).toBeLessThan(25_000);
    // Each instance on its own port from the plan (increment_var).
    expect(list.filter((p) => p.name === 'api').map((p) => Number(p.pm2_env.API_PORT)).sort()).toEqual(ports.api);
    for (const app of built) {
      for (const port of ports[app]!) {
        const r = await http(`http://127.0.0.1:${port}/healthz`);
        expect(r.status, `${app} on ${port}: ${r.body}`).toBe(200);
      }
    }
    // One log file pair per app, JSON lines without a PM2 prefix.
    const out = readFileSync(join(dir, 'logs', 'api-out.log'), 'utf8').trim().split('\n');
    expect(out.length).toBeGreaterThan(0);
    for (const line of out) expect(JSON.parse(line)).toHaveProperty('service', 'api');
    expect(existsSync(join(dir, 'logs', 'api-err.log'))).toBe(true);
  });

  it('restarts a process killed with SIGKILL', async () => {
    const victim = built.includes('relay') ? 'relay' : built[0]!;
    const before = (await jlist()).find((p) => p.name === victim)!;
    process.kill(before.pid, 'SIGKILL');
    const after = await waitFor(
      `${victim} back online with a new pid`,
      async () => {
        const p = (await jlist()).find((x) => x.pm_id === before.pm_id);
        return p && p.pid && p.pid !== before.pid && p.pm2_env.status === 'online' ? p : null;
      },
      60_000,
      200,
    );
    expect(after.pm2_env.restart_time).toBeGreaterThan(before.pm2_env.restart_time);
    await waitFor(`${victim} healthy`, async () => (await http(`http://127.0.0.1:${ports[victim]![0]}/healthz`)).status === 200, 60_000);
  });

  it('reloads the api instance by instance without failing a request through nginx', async () => {
    const base = `http://127.0.0.1:${nginx.port}`;
    const token = await login(base, 'admin', ADMIN_PASSWORD);
    const before = (await jlist()).filter((p) => p.name === 'api').map((p) => p.pid);

    let stop = false;
    const results: Array<number | string> = [];
    const hammer = async (path: string) => {
      while (!stop) {
        try {
          const r = await http(`${base}${path}`, { headers: { authorization: `Bearer ${token}` }, timeoutMs: 60_000 });
          results.push(r.status);
        } catch (err) {
          results.push(String(err));
        }
      }
    };
    const clients = [hammer('/healthz'), hammer('/api/jobs?limit=5'), hammer('/api/jobs?limit=5'), hammer('/healthz')];
    // Load before and after the reload, counted in answers rather than in time (a loaded machine
    // answers fewer requests per second): 30 before, 30 after, so more than 50 in all.
    await waitFor('the clients to get 30 answers before the reload', () => results.length >= 30, 60_000, 20);
    const t0 = Date.now();
    await pm2('reload', 'api');
    const reloadMs = Date.now() - t0;
    const afterReload = results.length;
    await waitFor('the clients to get 30 answers after the reload', () => results.length >= afterReload + 30, 60_000, 20);
    stop = true;
    await Promise.all(clients);

    const after = await jlist();
    const apis = after.filter((p) => p.name === 'api');
    expect(apis.every((p) => p.pm2_env.status === 'online')).toBe(true);
    for (const pid of before) expect(apis.map((p) => p.pid)).not.toContain(pid);
    const failed = results.filter((r) => r !== 200);
    expect(results.length).toBeGreaterThan(50);
    expect(failed, `${failed.length} of ${results.length} requests failed during a ${reloadMs} ms reload`).toEqual([]);
    // Requests did reach an instance while it restarted, and nginx passed them to the other one.
    const retried = nginx
      .accessLog()
      .split('\n')
      .filter((l) => l.includes('"upstream":"127.0.0.1:') && l.includes(', 127.0.0.1:'));
    expect(retried.length, 'no request was passed to the next api instance').toBeGreaterThan(0);
    console.info(`reload: ${results.length} requests in ${reloadMs} ms, ${retried.length} passed on to the other instance, none failed`);
    // Both instances on their ports again.
    expect(apis.map((p) => Number(p.pm2_env.API_PORT)).sort()).toEqual(ports.api);
  });

  it('pm2 delete all + pm2 kill leaves no process behind', async () => {
    const pids = (await jlist()).map((p) => p.pid);
    const daemonPid = Number(readFileSync(join(dir, 'pm2', 'pm2.pid'), 'utf8'));
    expect(pids.length).toBeGreaterThan(0);
    expect(pids.every(alive)).toBe(true);

    await pm2('delete', 'all');
    await pm2('kill');

    await waitFor('every process to be gone', () => !pids.some(alive) && !alive(daemonPid), 60_000);
    // The daemon's command line names its PM2_HOME; the apps' pids were checked above.
    const left = await run('pgrep', ['-af', join(dir, 'pm2')]).then(
      (r) => r.stdout.trim(),
      () => '',
    );
    expect(left).toBe('');
    for (const app of built) {
      for (const port of ports[app]!) {
        await expect(http(`http://127.0.0.1:${port}/healthz`, { timeoutMs: 2_000 })).rejects.toThrow();
      }
    }
  });
});
