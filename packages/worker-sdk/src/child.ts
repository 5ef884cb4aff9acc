import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { AbortError, abortMessage } from './errors.js';

export interface RunChildOptions {
  /** Aborting kills the child's whole process group (SIGTERM, then SIGKILL after `killGraceMs`). */
  signal: AbortSignal;
  /** Each line of stdout (split on `\n`, `\r\n` and `\r`, so progress bars arrive line by line). */
  onStdout?(line: string): void;
  onStderr?(line: string): void;
  cwd?: string;
  /** Kill the child after this long and reject with a (retryable) timeout error. */
  timeoutMs?: number;
  /** Environment of the child; default the worker's. */
  env?: NodeJS.ProcessEnv;
  /** Delay between SIGTERM and SIGKILL. Default 2000. */
  killGraceMs?: number;
  /** Bytes of stderr kept for `stderrTail`. Default 4096. */
  stderrTailBytes?: number;
}

export interface RunChildResult {
  /** Exit code; 128 + signal number when the child died of a signal nobody here sent. */
  code: number;
  /** The end of stderr, for error messages. */
  stderrTail: string;
  /** The signal that ended the child, if one did. */
  signal?: NodeJS.Signals | null;
}

/** Thrown by runChild when `timeoutMs` passed. Not permanent: a retry may be faster. */
export class ChildTimeoutError extends Error {
  constructor(cmd: string, timeoutMs: number, readonly stderrTail: string) {
    super(`${cmd} did not finish within ${timeoutMs} ms`);
    this.name = 'ChildTimeoutError';
  }
}

function lineSplitter(onLine: ((line: string) => void) | undefined): { push(chunk: string): void; end(): void } {
  let buffer = '';
  const emit = (line: string) => {
    if (!onLine) return;
    try {
      onLine(line);
    } catch {
      // A faulty line handler must not break the child's pipes.
    }
  };
  return {
    push(chunk) {
      buffer += chunk;
      const parts = buffer.split(/\r\n|\n|\r/);
      buffer = parts.pop() ?? '';
      for (const p of parts) emit(p);
      // A single line that never ends (a binary spewing) must not grow without bound.
      if (buffer.length > 1 << 20) {
        emit(buffer);
        buffer = '';
      }
    },
    end() {
      if (buffer) emit(buffer);
      buffer = '';
    },
  };
}

/**
 * Spawns `cmd args` in its own process group (stdin closed) and resolves with its exit code once
 * it exited, whatever the code. When `signal` fires it kills the whole group (children of the
 * child too: yt-dlp's ffmpeg, say) with SIGTERM, then SIGKILL after 2 s, and rejects with an
 * AbortError only once the child has exited, so nothing is still writing when the caller cleans up.
 * A command that cannot be started rejects with the spawn error (`code: 'ENOENT'` when missing).
 */
export function runChild(cmd: string, args: string[], opts: RunChildOptions): Promise<RunChildResult> {
  const { signal, cwd, timeoutMs, env, killGraceMs = 2_000, stderrTailBytes = 4_096 } = opts;
  return new Promise<RunChildResult>((resolve, reject) => {
    if (signal.aborted) {
      reject(new AbortError(abortMessage(signal)));
      return;
    }
    const child = spawn(cmd, args, {
      cwd,
      env: env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so a kill reaches grandchildren too.
      detached: true,
    });

    let stderrTail = '';
    const out = lineSplitter(opts.onStdout);
    const err = lineSplitter(opts.onStderr);
    child.stdout.setEncoding('utf8').on('data', (c: string) => out.push(c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderrTail = (stderrTail + c).slice(-stderrTailBytes);
      err.push(c);
    });

    let killReason: 'abort' | 'timeout' | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;
    let exited = false;

    const killGroup = (sig: NodeJS.Signals) => {
      if (exited || child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        try {
          child.kill(sig);
        } catch {
          // Already gone.
        }
      }
    };
    const stop = (reason: 'abort' | 'timeout') => {
      if (killReason || exited) return;
      killReason = reason;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), killGraceMs);
      killTimer.unref?.();
    };
    const onAbort = () => stop('abort');
    signal.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs !== undefined && timeoutMs > 0) timeoutTimer = setTimeout(() => stop('timeout'), timeoutMs);

    const cleanup = () => {
      signal.removeEventListener('abort', onAbort);
      clearTimeout(timeoutTimer);
      clearTimeout(killTimer);
    };

    child.once('error', (e) => {
      // Spawn failure (ENOENT, EACCES): no 'close' follows when the process never started.
      if (child.pid === undefined) {
        exited = true;
        cleanup();
        reject(e);
      }
    });
    // 'close' (not 'exit'): stdio is drained, so every line was delivered.
    child.once('close', (code, sig) => {
      exited = true;
      cleanup();
      out.end();
      err.end();
      // Make sure nothing of the group outlives an abort (a grandchild that ignored SIGTERM).
      if (killReason && child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // Group already gone.
        }
      }
      if (killReason === 'abort') {
        reject(new AbortError(abortMessage(signal)));
        return;
      }
      if (killReason === 'timeout') {
        reject(new ChildTimeoutError(cmd, timeoutMs ?? 0, stderrTail));
        return;
      }
      const sigNo = sig ? (osConstants.signals as Record<string, number>)[sig] : undefined;
      resolve({ code: code ?? 128 + (sigNo ?? 0), stderrTail, signal: sig });
    });
  });
}
