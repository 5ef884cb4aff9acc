// Small helpers shared by the benchmark scripts: private Redis, child processes, ports.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export async function waitForHttp(url, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

/** Starts a child node process; registers its SIGTERM in cleanups. */
export async function startProcess(script, { env, cleanups, portFromStdout = false, nodeArgs = [], cwd }) {
  const child = spawn(process.execPath, [...nodeArgs, script], { env, cwd, stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(
    () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', resolve);
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      }),
  );
  if (!portFromStdout) {
    child.stdout.resume();
    return { child };
  }
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /^(\d+)\n/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  child.stdout.resume();
  return { child, port };
}

/** Starts a private redis-server (no persistence) and returns its URL. */
export async function startRedis(dir, cleanups) {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  cleanups.push(
    () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', resolve);
        child.kill('SIGTERM');
      }),
  );
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1', () => {
        sock.end();
        resolve(true);
      });
      sock.on('error', () => resolve(false));
    });
    if (ok) return `redis://127.0.0.1:${port}`;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}

/**
 * Publishes sequence-numbered progress messages on `channel` at `rate` per second for `seconds`,
 * round-robin over `jobIds`, in 10 ms pipelined slices. `seq` (jobId → next number) carries on
 * across calls. Returns how many were sent and over how long.
 */
export async function publishProgressAtRate({ redis, channel, jobIds, seq, rate, seconds }) {
  let sent = 0;
  let next = 0;
  const started = Date.now();
  while (Date.now() - started < seconds * 1000) {
    const due = Math.floor(((Date.now() - started) / 1000) * rate) - sent;
    if (due > 0) {
      const pipe = redis.pipeline();
      for (let i = 0; i < due; i++) {
        const jobId = jobIds[next++ % jobIds.length];
        const s = seq.get(jobId) ?? 0;
        seq.set(jobId, s + 1);
        pipe.publish(channel, JSON.stringify({ jobId, type: 'progress', timestamp: new Date().toISOString(), payload: { stage: 'download', percent: Math.min(99, s % 100), speed: 1000, eta: 1, step: 'bench', seq: s } }));
      }
      await pipe.exec();
      sent += due;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return { sent, elapsedSeconds: (Date.now() - started) / 1000 };
}

/** User + system CPU of a process so far, in ms (Linux /proc, USER_HZ 100; NaN elsewhere). */
export function cpuMsOf(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}
