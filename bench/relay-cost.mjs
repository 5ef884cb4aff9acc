// CPU the relay spends per progress message, measured from /proc: the built relay on a private
// Redis, progress published at a fixed rate for 1,000 jobs, no realtime node (the emitter's
// PUBLISHes go to a channel nobody reads). Isolates the relay's own cost from the rest of the
// fan-out path, so a change to it can be judged on a noisy 2-core machine.
//   node bench/relay-cost.mjs [--rate 25000] [--seconds 8] [--rounds 3]
// BENCH_PROFILE_DIR=/path: the relay runs under --cpu-prof (profile written at its exit).
// Linux only (reads /proc/<pid>/stat). Needs the built apps and redis-server.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { startRedis, startProcess, freePort, waitForHttp, publishProgressAtRate, median, cpuMsOf } from './lib/harness.mjs';

const { values: args } = parseArgs({ options: { rate: { type: 'string', default: '25000' }, seconds: { type: 'string', default: '8' }, rounds: { type: 'string', default: '3' } } });
const root = new URL('..', import.meta.url).pathname;

const dir = mkdtempSync(join(tmpdir(), 'dubgate-relay-cost-'));
const cleanups = [];
try {
  const redisUrl = await startRedis(dir, cleanups);
  const port = await freePort();
  const profileDir = process.env.BENCH_PROFILE_DIR;
  const { child } = await startProcess(join(root, 'apps/relay/dist/server.js'), {
    cleanups,
    nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
    env: { ...process.env, REDIS_URL: redisUrl, DB_PATH: join(dir, 'gw.db'), RELAY_PORT: String(port), LOG_LEVEL: 'info', RELAY_PROGRESS_PER_SECOND: '1000' },
  });
  await waitForHttp(`http://127.0.0.1:${port}/healthz`);
  const redis = new Redis(redisUrl);
  cleanups.push(() => redis.quit());
  const jobIds = Array.from({ length: 1000 }, () => randomUUID());
  const seq = new Map();
  const rate = Number(args.rate);
  await publishProgressAtRate({ redis, channel: 'events:progress', jobIds, seq, rate, seconds: 2 }); // warm-up
  const perMessage = [];
  for (let r = 0; r < Number(args.rounds); r++) {
    const before = cpuMsOf(child.pid);
    const { sent } = await publishProgressAtRate({ redis, channel: 'events:progress', jobIds, seq, rate, seconds: Number(args.seconds) });
    await new Promise((res) => setTimeout(res, 500)); // let the tail through
    const us = ((cpuMsOf(child.pid) - before) * 1000) / sent;
    perMessage.push(us);
    console.log(`round ${r + 1}: ${sent} messages at ${rate}/s, relay CPU ${us.toFixed(1)} µs per message`);
  }
  const metrics = await fetch(`http://127.0.0.1:${port}/metrics`).then((res) => res.text());
  const emitted = /dubgate_relay_events_emitted_total\{[^}]*event="progress"[^}]*\} (\d+)/.exec(metrics)?.[1];
  console.log(`median ${median(perMessage).toFixed(1)} µs per message (${(median(perMessage) * rate / 1e4).toFixed(0)}% of a core at ${rate}/s); emitted ${emitted}`);
} finally {
  for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
