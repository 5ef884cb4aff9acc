// Fan-out benchmark: worker publish on events:progress → relay → Redis emitter → realtime node
// → official socket.io-client processes. Measures the event lag (worker timestamp to client
// receipt) at a given number of clients and events per second, and counts sequence gaps.
//
//   node bench/fanout.mjs [--clients 1000] [--rate 10000] [--seconds 10] [--processes 4]
// Each client subscribes to its own job; the rate is spread evenly over the jobs.
import { fork } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { startRedis, startProcess, freePort, waitForHttp, publishProgressAtRate } from './lib/harness.mjs';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '10' },
    processes: { type: 'string', default: '4' },
    // Progress updates per job per second the relay lets through (it coalesces the rest).
    'relay-rate': { type: 'string' },
  },
});
const clients = Number(args.clients);
const rate = Number(args.rate);
const seconds = Number(args.seconds);
const procs = Math.min(Number(args.processes), clients);
const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'dubgate-fanout-'));
const cleanups = [];
const cleanup = async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
};

const secret = randomUUID() + randomUUID();
function sign(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ ...claims, iss: 'dubgate', aud: 'dubgate', iat: now, exp: now + 3600 })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;

try {
  const redisUrl = process.env.REDIS_URL ?? (await startRedis(dir, cleanups));
  const redis = new Redis(redisUrl);
  cleanups.push(() => redis.quit());

  // Jobs and owners: realtime authorizes subscriptions from the owner keys in Redis.
  const userId = randomUUID();
  const jobIds = Array.from({ length: clients }, () => randomUUID());
  const pipe = redis.pipeline();
  for (const id of jobIds) pipe.set(`gw:job-owner:${id}`, userId);
  await pipe.exec();

  const common = { ...process.env, REDIS_URL: redisUrl, DB_PATH: join(dir, 'gw.db'), MEDIA_ROOT: join(dir, 'media'), JWT_SECRET: secret, LOG_LEVEL: 'warn' };
  const relayPort = await freePort();
  await startProcess(join(root, 'apps/relay/dist/server.js'), {
    env: { ...common, RELAY_PORT: String(relayPort), RELAY_PROGRESS_PER_SECOND: args['relay-rate'] ?? String(Math.max(4, Math.ceil((rate / clients) * 2))) },
    cleanups,
  });
  const rtPort = await freePort();
  await startProcess(join(root, 'apps/realtime/dist/server.js'), { env: { ...common, REALTIME_PORT: String(rtPort) }, cleanups });
  await waitForHttp(`http://127.0.0.1:${relayPort}/healthz`);
  await waitForHttp(`http://127.0.0.1:${rtPort}/healthz`);

  // Client processes, each with a share of the sockets.
  const children = [];
  const per = Math.ceil(clients / procs);
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: procs }, (_, p) => {
      const ids = jobIds.slice(p * per, (p + 1) * per);
      const tokens = ids.map(() => sign({ sub: userId, sid: randomUUID(), role: 'user' }));
      const child = fork(join(root, 'bench/lib/ws-clients.mjs'), [JSON.stringify({ url: `http://127.0.0.1:${rtPort}`, tokens, jobIds: ids })]);
      children.push(child);
      cleanups.push(() => child.kill());
      return new Promise((resolve, reject) => {
        child.on('message', (m) => (m.ready ? resolve() : m.error ? reject(new Error(m.error)) : undefined));
      });
    }),
  );
  console.error(`${clients} clients connected and subscribed in ${Date.now() - t0} ms`);

  // Publish at `rate` messages per second, round-robin over the jobs.
  const { sent, elapsedSeconds: elapsed } = await publishProgressAtRate({
    redis,
    channel: 'events:progress',
    jobIds,
    seq: new Map(jobIds.map((id) => [id, 0])),
    rate,
    seconds,
  });
  await new Promise((r) => setTimeout(r, 1500)); // let the tail arrive
  const reports = await Promise.all(children.map((c) => new Promise((resolve) => { c.once('message', resolve); c.send({ report: true }); })));
  const lags = reports.flatMap((r) => r.lags).sort((a, b) => a - b);
  const received = reports.reduce((a, r) => a + r.received, 0);
  const gaps = reports.reduce((a, r) => a + r.gaps, 0);
  console.log(`\nfan-out: ${clients} clients, ${(sent / elapsed).toFixed(0)} events/s published for ${elapsed.toFixed(1)} s`);
  console.log(`  delivered ${received} of ${sent} (${((received / sent) * 100).toFixed(1)}%), ${(received / elapsed).toFixed(0)} deliveries/s, sequence gaps ${gaps}`);
  console.log(`  lag (worker timestamp → client): p50 ${quantile(lags, 0.5)} ms, p90 ${quantile(lags, 0.9)} ms, p99 ${quantile(lags, 0.99)} ms, max ${lags[lags.length - 1]} ms`);
} finally {
  await cleanup();
}
