// Starts a real process on the built code, sends it signals, and checks exit codes and that
// in-flight work drained (ARCHITECTURE.md: "a shutdown test starts the built process").
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const built = existsSync(`${dist}shutdown.js`) && existsSync(`${dist}logger.js`);

function script(stepMs: number, timeoutMs: number): string {
  return `
    const { createLogger } = await import(${JSON.stringify(`${dist}logger.js`)});
    const { createShutdown } = await import(${JSON.stringify(`${dist}shutdown.js`)});
    const logger = createLogger({ name: 'probe' });
    const shutdown = createShutdown({ logger, timeoutMs: ${timeoutMs} });
    const keepAlive = setInterval(() => {}, 1000);
    shutdown.add('timer', () => clearInterval(keepAlive));
    shutdown.add('in-flight work', () => new Promise((r) => setTimeout(() => { logger.info('drained'); r(); }, ${stepMs})));
    shutdown.listen();
    logger.info('ready');
  `;
}

async function runChild(stepMs: number, timeoutMs: number, signals: NodeJS.Signals[]) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script(stepMs, timeoutMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Listen before signalling: the second-signal case exits within milliseconds. 'close', not
  // 'exit': it comes once stdout is read to the end, so the last log lines are in `out`.
  const exited = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  let out = '';
  child.stdout.setEncoding('utf8');
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const ready = new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('"msg":"ready"')) resolve();
    });
  });
  const waitForOutput = (text: string) =>
    Promise.race([
      new Promise<void>((resolve) => {
        if (out.includes(text)) return resolve();
        const onData = () => {
          if (!out.includes(text)) return;
          child.stdout.off('data', onData);
          resolve();
        };
        child.stdout.on('data', onData);
      }),
      exited.then(() => {
        throw new Error(`child exited before it printed ${text}: ${out}${err}`);
      }),
    ]);
  await Promise.race([
    ready,
    exited.then(() => {
      throw new Error(`child exited before it was ready: ${err}`);
    }),
  ]);
  const started = Date.now();
  for (const [i, signal] of signals.entries()) {
    child.kill(signal);
    // Two signals of one kind that are pending together are delivered once: before the next
    // one, wait until the child logged that it handled this one (a fixed pause is not enough
    // on a loaded machine, where the child may not run for a while).
    if (i < signals.length - 1) await waitForOutput(`"msg":"received ${signal}"`);
  }
  const code = await exited;
  const messages = out.trim().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg);
  return { code, messages, elapsed: Date.now() - started };
}

describe.skipIf(!built)('shutdown of a real process', { timeout: 20_000 }, () => {
  it('drains in-flight work on SIGTERM and exits 0', async () => {
    const { code, messages } = await runChild(100, 5000, ['SIGTERM']);
    expect(code).toBe(0);
    expect(messages).toEqual(['ready', 'received SIGTERM', 'shutting down', 'drained', 'closed in-flight work', 'closed timer', 'shutdown complete']);
  });

  it('exits 1 when a step outlasts SHUTDOWN_TIMEOUT_MS', async () => {
    const { code, messages, elapsed } = await runChild(60_000, 200, ['SIGINT']);
    expect(code).toBe(1);
    expect(messages).toContain('closing in-flight work timed out');
    expect(messages).toContain('closed timer');
    expect(elapsed).toBeLessThan(3000);
  });

  it('exits 1 at once on a second signal', async () => {
    const { code, messages, elapsed } = await runChild(60_000, 60_000, ['SIGTERM', 'SIGTERM']);
    expect(code).toBe(1);
    expect(messages).toContain('second signal during shutdown; exiting now');
    expect(elapsed).toBeLessThan(3000);
  });
});
