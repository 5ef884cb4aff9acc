/**
 * Every BUILT process, started as PM2 starts it (`node apps/<name>/dist/server.js`, ready on IPC)
 * with a private redis-server and a temp database:
 *   - its /metrics passes `promtool check metrics`;
 *   - SIGTERM while it has work in flight (HTTP requests for the api, connected sockets for
 *     realtime, a stream of events for the relay, pending outbox work for the scheduler, a
 *     running stage for each worker) ends with exit code 0 within SHUTDOWN_TIMEOUT_MS, the work
 *     finished or handed back.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  APPS,
  baseEnv,
  cleanupAll,
  commandExists,
  freePort,
  http,
  isBuilt,
  login,
  onCleanup,
  sleep,
  startApp,
  startRedis,
  tempDir,
  terminate,
  waitFor,
  type AppName,
  type Proc,
} from './helpers.js';

const run = promisify(execFile);
const missing = ['redis-server', 'promtool'].filter((c) => !commandExists(c));
if (missing.length) console.warn(`SKIPPED process tests: ${missing.join(', ')} not installed (apt-get install redis-server prometheus)`);
const mediaTools = ['ffmpeg', 'espeak-ng'].filter((c) => !commandExists(c));
if (mediaTools.length) console.warn(`worker stage tests need ${mediaTools.join(', ')} (apt-get install ffmpeg espeak-ng)`);

const built = APPS.filter(isBuilt);
const unbuilt = APPS.filter((a) => !isBuilt(a));
const allowUnbuilt = process.env.DEPLOY_TEST_ALLOW_UNBUILT === '1';
const has = (app: AppName) => built.includes(app);

const SHUTDOWN_TIMEOUT_MS = 8_000;
const ADMIN_PASSWORD = 'deploy-test-admin-password';
const PORT_VARS: Record<AppName, string> = {
  api: 'API_PORT',
  realtime: 'REALTIME_PORT',
  scheduler: 'SCHEDULER_PORT',
  relay: 'RELAY_PORT',
  'worker-download': 'WORKER_PORT',
  'worker-dub': 'WORKER_PORT',
  'worker-mux': 'WORKER_PORT',
};

/** `promtool check metrics` on a text: exit code and what it said. */
function promtoolCheckMetrics(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolveCheck) => {
    const p = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (d: Buffer) => (output += d));
    p.stderr.on('data', (d: Buffer) => (output += d));
    p.on('close', (code) => resolveCheck({ code, output }));
    p.stdin.end(text);
  });
}

// Per test: above the sum of its waits (deadlines, reached only when something is wrong).
describe.skipIf(missing.length > 0)('every built process', { timeout: 240_000 }, () => {
  let dir: string;
  let mediaRoot: string;
  let redisUrl: string;
  let env: NodeJS.ProcessEnv;
  const procs = new Map<AppName, Proc>();
  const ports = new Map<AppName, number>();
  let apiBase: string;
  let token: string;
  let redis: Redis;

  async function start(app: AppName): Promise<Proc> {
    const port = await freePort();
    ports.set(app, port);
    // The api logs each request's arrival at debug only; the SIGTERM test below counts those lines.
    const level = app === 'api' ? { LOG_LEVEL: 'debug' } : {};
    const proc = await startApp(app, { ...env, ...level, [PORT_VARS[app]]: String(port) });
    procs.set(app, proc);
    return proc;
  }

  async function createJob(body: Record<string, unknown>): Promise<string> {
    const r = await http(`${apiBase}/api/jobs`, { headers: { authorization: `Bearer ${token}` }, body });
    expect(r.status, r.body).toBe(201);
    return r.json().job.id as string;
  }

  /** SIGTERM; exit code 0 within SHUTDOWN_TIMEOUT_MS and the shutdown logged as complete. */
  async function expectCleanExit(proc: Proc) {
    const r = await terminate(proc);
    expect(r, proc.output().split('\n').slice(-15).join('\n')).toMatchObject({ code: 0, signal: null });
    expect(r.ms).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    expect(proc.logs().some((l) => l.msg === 'shutdown complete')).toBe(true);
    return r;
  }

  beforeAll(async () => {
    if (unbuilt.length && !allowUnbuilt) throw new Error(`not built: ${unbuilt.join(', ')}: build everything first`);
    if (unbuilt.length) console.warn(`process tests run without the unbuilt ${unbuilt.join(', ')}`);
    dir = tempDir('processes');
    mediaRoot = join(dir, 'media');
    const server = await startRedis(dir);
    onCleanup(() => server.stop());
    redisUrl = server.url;
    env = baseEnv({
      REDIS_URL: redisUrl,
      DB_PATH: join(dir, 'gateway.db'),
      MEDIA_ROOT: mediaRoot,
      JWT_SECRET: randomBytes(32).toString('hex'),
      ADMIN_PASSWORD,
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      ALLOW_PRIVATE_URLS: 'true',
      LOGIN_MAX_PER_CLIENT: '100000',
      LOGIN_MAX_PER_USERNAME: '100000',
      TEST_CWD: dir,
    });
    // The api first (it creates the database and the admin), then the rest at once.
    await start('api');
    await Promise.all(built.filter((a) => a !== 'api').map((a) => start(a)));
    apiBase = `http://127.0.0.1:${ports.get('api')}`;
    token = await login(apiBase, 'admin', ADMIN_PASSWORD);
    redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    onCleanup(() => redis.quit().catch(() => redis.disconnect()));
  }, 240_000); // starting every process on a loaded machine: a deadline, not an expectation

  afterAll(async () => {
    await cleanupAll();
  });

  it('serves /metrics that promtool check metrics accepts, from each one', async () => {
    expect([...procs.keys()].sort()).toEqual([...built].sort());
    for (const [app, port] of ports) {
      const r = await http(`http://127.0.0.1:${port}/metrics`);
      expect(r.status, app).toBe(200);
      expect(r.headers['content-type']).toContain('text/plain');
      expect(r.body).toContain('process_cpu_seconds_total');
      const check = await promtoolCheckMetrics(r.body);
      expect(check, `promtool check metrics on ${app}'s /metrics`).toEqual({ code: 0, output: '' });
    }
  });

  it('realtime: SIGTERM with connected, subscribed sockets tells them to reconnect and exits 0', async () => {
    const proc = procs.get('realtime')!;
    const jobId = await createJob({ url: 'https://videos.example.com/watch?v=realtime-shutdown' });
    const url = `http://127.0.0.1:${ports.get('realtime')}`;
    const sockets: Socket[] = [];
    onCleanup(() => sockets.forEach((s) => s.disconnect()));
    for (let i = 0; i < 8; i++) {
      const s = io(url, { transports: [i % 2 ? 'polling' : 'websocket'], auth: { token }, reconnection: false, forceNew: true });
      sockets.push(s);
      await new Promise<void>((ok, fail) => {
        s.once('connect', () => ok());
        s.once('connect_error', fail);
      });
      await waitFor('subscribe', async () => (await s.timeout(5_000).emitWithAck('subscribe', [jobId])).results[0]?.accepted);
    }
    const told = new Set<number>();
    const gone: Array<string | undefined> = sockets.map(() => undefined);
    sockets.forEach((s, i) => {
      s.on('notification', (n: { type: string }) => n.type === 'server_shutdown' && told.add(i));
      s.once('disconnect', (reason) => (gone[i] = reason));
    });
    await expectCleanExit(proc);
    // A deadline that says which socket missed what (rather than the test's timeout).
    await waitFor('every socket to be told and to go', () => {
      if (told.size === sockets.length && gone.every(Boolean)) return true;
      throw new Error(`told: [${[...told].sort().join(',')}] of ${sockets.length}, disconnect reasons: ${JSON.stringify(gone)} (odd sockets poll)`);
    });
    const reasons = gone as string[];
    // Closing the transport (not a server-side disconnect) is what makes clients reconnect elsewhere.
    expect(reasons.every((r) => r === 'transport close' || r === 'transport error')).toBe(true);
  });

  it('relay: SIGTERM in the middle of a stream of events writes what it took and exits 0', async () => {
    const proc = procs.get('relay')!;
    const jobId = await createJob({ url: 'https://videos.example.com/watch?v=relay-shutdown' });
    let sent = 0;
    let stop = false;
    const stream = (async () => {
      while (!stop) {
        const batch = redis.pipeline();
        for (let i = 0; i < 50; i++) {
          batch.publish(
            'events:log',
            JSON.stringify({ jobId, type: 'log', timestamp: new Date().toISOString(), payload: { level: 'info', message: `line ${sent++}` } }),
          );
        }
        await batch.exec();
        await sleep(5);
      }
    })();
    await waitFor('the relay to write some events', async () => {
      const r = await http(`${apiBase}/api/jobs/${jobId}/logs?limit=10`, { headers: { authorization: `Bearer ${token}` } });
      return r.json().items.some((e: { message?: string }) => String(e.message ?? '').startsWith('line '));
    });
    await expectCleanExit(proc);
    stop = true;
    await stream;
    // What it had taken in was flushed to job_events before it exited.
    let written = 0;
    for (let after = 0; ; ) {
      const page = await http(`${apiBase}/api/jobs/${jobId}/logs?after=${after}&limit=100`, { headers: { authorization: `Bearer ${token}` } });
      expect(page.status, page.body).toBe(200);
      const { items, nextAfter } = page.json() as { items: Array<{ message?: string }>; nextAfter: number | null };
      written += items.filter((e) => String(e.message ?? '').startsWith('line ')).length;
      if (!nextAfter || items.length === 0) break;
      after = nextAfter;
    }
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThanOrEqual(sent);
  });

  it('scheduler: SIGTERM while jobs pour in exits 0', async () => {
    const proc = procs.get('scheduler')!;
    const creating = Promise.all(Array.from({ length: 30 }, (_, i) => createJob({ url: `https://videos.example.com/watch?v=sched-${i}` })));
    await sleep(100);
    await expectCleanExit(proc);
    await creating;
  });

  it.skipIf(mediaTools.length > 0 || !has('worker-download'))(
    'worker-download: SIGTERM during a download hands the stage back and exits 0',
    async () => {
      const proc = procs.get('worker-download')!;
      // A server that trickles a large file, so the download is still running at SIGTERM.
      let requests = 0;
      const slow: Server = createServer((req, res) => {
        requests++;
        res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(50 * 1024 * 1024) });
        const timer = setInterval(() => res.write(Buffer.alloc(16 * 1024)), 50);
        res.on('close', () => clearInterval(timer));
      });
      const slowPort = await freePort();
      await new Promise<void>((ok) => slow.listen(slowPort, '127.0.0.1', ok));
      onCleanup(() => {
        slow.closeAllConnections();
        slow.close();
      });
      const jobId = await createJob({ url: `http://127.0.0.1:${slowPort}/video.mp4` });
      await waitFor('the worker to start downloading', () => requests > 0, 60_000);
      await sleep(300);
      await expectCleanExit(proc);
      const queue = new Queue('download', { prefix: 'q', connection: { url: redisUrl } as never });
      onCleanup(() => queue.close());
      const jobs = await queue.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed', 'prioritized', 'paused']);
      const mine = jobs.filter((j) => j?.data?.jobId === jobId);
      expect(mine.length).toBe(1);
      // Handed back (waiting or delayed for the next worker), never failed.
      expect(['waiting', 'delayed', 'prioritized', 'completed']).toContain(await mine[0]!.getState());
    },
    120_000,
  );

  /** Puts a stage job straight on its BullMQ queue, as the scheduler would. */
  async function enqueue(stage: 'dub' | 'mux', payload: Record<string, unknown>) {
    const queue = new Queue(stage, { prefix: 'q', connection: { url: redisUrl } as never });
    onCleanup(() => queue.close());
    const job = await queue.add(stage, payload, { jobId: `${String(payload.jobId)}_${stage}_g0`, attempts: 3 });
    return { queue, job };
  }

  async function makeVideo(jobId: string, seconds: number, cues: number): Promise<{ media: string; subs: string }> {
    const jobDir = join(mediaRoot, jobId);
    mkdirSync(jobDir, { recursive: true });
    const ts = (s: number) => `00:${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')},000`;
    const srt = Array.from({ length: cues }, (_, i) => `${i + 1}\n${ts(i)} --> ${ts(i + 1)}\nThis is line number ${i + 1} of the test.\n`).join('\n');
    writeFileSync(join(jobDir, 'source.srt'), srt);
    await run('ffmpeg', [
      '-v', 'error', '-y',
      '-f', 'lavfi', '-i', `testsrc=duration=${seconds}:size=160x120:rate=10`,
      '-f', 'lavfi', '-i', `sine=frequency=440:duration=${seconds}`,
      '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest',
      join(jobDir, 'source.mp4'),
    ]);
    return { media: `${jobId}/source.mp4`, subs: `${jobId}/source.srt` };
  }

  async function stageUnderWay(queue: Queue, id: string) {
    await waitFor('the stage to run', async () => ['active', 'completed'].includes(await queue.getJobState(id)), 60_000, 50);
  }

  it.skipIf(mediaTools.length > 0 || !has('worker-dub'))(
    'worker-dub: SIGTERM during a dub stage finishes or hands it back, and exits 0',
    async () => {
      const proc = procs.get('worker-dub')!;
      const jobId = `dubshutdown${randomBytes(4).toString('hex')}`;
      const { media, subs } = await makeVideo(jobId, 60, 60);
      const { queue, job } = await enqueue('dub', { jobId, generation: 0, workDir: jobId, mediaPath: media, subtitlePath: subs, targetLang: 'es' });
      await stageUnderWay(queue, job.id!);
      await sleep(300);
      await expectCleanExit(proc);
      expect(['waiting', 'delayed', 'prioritized', 'completed']).toContain(await queue.getJobState(job.id!));
    },
    120_000,
  );

  it.skipIf(mediaTools.length > 0 || !has('worker-mux'))(
    'worker-mux: SIGTERM during a mux stage finishes or hands it back, and exits 0',
    async () => {
      const proc = procs.get('worker-mux')!;
      const jobId = `muxshutdown${randomBytes(4).toString('hex')}`;
      const { media } = await makeVideo(jobId, 120, 1);
      const { queue, job } = await enqueue('mux', { jobId, generation: 0, workDir: jobId, mediaPath: media, outputContainer: 'mkv' });
      await stageUnderWay(queue, job.id!);
      await expectCleanExit(proc);
      expect(['waiting', 'delayed', 'prioritized', 'completed']).toContain(await queue.getJobState(job.id!));
    },
    120_000,
  );

  it('api: SIGTERM with requests in flight answers every one of them and exits 0', async () => {
    const proc = procs.get('api')!;
    // Logins cost a scrypt hash each: sixty of them keep the api busy for a while.
    const inFlight = [
      ...Array.from({ length: 40 }, () =>
        http(`${apiBase}/api/auth/login`, { body: { username: 'admin', password: ADMIN_PASSWORD }, timeoutMs: 60_000 }),
      ),
      ...Array.from({ length: 20 }, () => http(`${apiBase}/api/jobs?limit=50`, { headers: { authorization: `Bearer ${token}` }, timeoutMs: 60_000 })),
    ];
    // In flight: the api has read every one of them (it logs each request as it comes in).
    const received = () => proc.logs().filter((l) => l.msg === 'incoming request').length;
    const before = received();
    await waitFor('the api to receive the requests', () => received() >= before + inFlight.length, 60_000, 10);
    const exit = terminate(proc);
    const answers = await Promise.allSettled(inFlight);
    const statuses = answers.map((a) => (a.status === 'fulfilled' ? a.value.status : String(a.reason)));
    expect(statuses.filter((s) => s !== 200), 'requests in flight at SIGTERM must all be answered').toEqual([]);
    const r = await exit;
    expect(r, proc.output().split('\n').slice(-15).join('\n')).toMatchObject({ code: 0, signal: null });
    expect(r.ms).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    // And it stopped taking new ones.
    await expect(http(`${apiBase}/healthz`, { timeoutMs: 2_000 })).rejects.toThrow();
  });
});
