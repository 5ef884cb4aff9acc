// runChild: lines, exit codes, and that an abort kills the whole process group before it settles.
import { describe, expect, it } from 'vitest';
import { runChild, ChildTimeoutError } from '../src/child.js';
import { isAbortError } from '../src/errors.js';
import { sleep, waitFor } from './helpers.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('runChild', () => {
  it('delivers stdout and stderr line by line (\\n, \\r\\n and \\r) and resolves with the exit code', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const r = await runChild('sh', ['-c', `printf 'a\\nb\\r\\nc\\rd'; printf 'oops\\n' >&2; exit 3`], {
      signal: new AbortController().signal,
      onStdout: (l) => out.push(l),
      onStderr: (l) => err.push(l),
    });
    expect(r.code).toBe(3);
    expect(out).toEqual(['a', 'b', 'c', 'd']);
    expect(err).toEqual(['oops']);
    expect(r.stderrTail).toBe('oops\n');
  });

  it('runs in cwd and rejects with ENOENT for a missing command', async () => {
    const out: string[] = [];
    await runChild('pwd', [], { signal: new AbortController().signal, cwd: '/tmp', onStdout: (l) => out.push(l) });
    expect(out).toEqual(['/tmp']);
    await expect(runChild('dubgate-no-such-command', [], { signal: new AbortController().signal })).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('kills the child and its children on abort, and rejects with an AbortError once they are gone', async () => {
    const ac = new AbortController();
    const pids: number[] = [];
    // The shell starts a grandchild (sleep) and waits for it.
    const run = runChild('sh', ['-c', 'sleep 30 & echo $$; echo $!; wait'], { signal: ac.signal, onStdout: (l) => pids.push(Number(l)) });
    await waitFor(() => pids.length === 2, 5_000, 'pids printed');
    expect(pids.every(alive)).toBe(true);
    const t0 = Date.now();
    ac.abort('stop');
    const err = await run.catch((e: unknown) => e);
    expect(isAbortError(err)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1_500);
    await waitFor(() => !pids.some(alive), 2_000, 'all gone');
  });

  it('sends SIGKILL 2 s after SIGTERM to a child that ignores SIGTERM', async () => {
    const ac = new AbortController();
    let ready = false;
    // An ignored signal stays ignored across exec, so sleep ignores SIGTERM too.
    const run = runChild('sh', ['-c', `trap '' TERM; echo ready; sleep 30; echo survived`], { signal: ac.signal, onStdout: () => (ready = true) });
    await waitFor(() => ready, 5_000, 'ready');
    await sleep(50);
    const t0 = Date.now();
    ac.abort();
    const err = await run.catch((e: unknown) => e);
    const elapsed = Date.now() - t0;
    expect(isAbortError(err)).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(1_900);
    expect(elapsed).toBeLessThan(4_000);
  });

  it('rejects at once when the signal already fired, and kills after timeoutMs', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(runChild('sleep', ['5'], { signal: ac.signal })).rejects.toSatisfy(isAbortError);
    const err = await runChild('sleep', ['5'], { signal: new AbortController().signal, timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChildTimeoutError);
  });
});
