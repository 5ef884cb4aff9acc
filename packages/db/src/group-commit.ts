import type { Database } from 'better-sqlite3';

/**
 * Group commit: writes asked for in the same turn of the event loop share one transaction.
 *
 * Each SQLite commit costs far more than the statements inside it (WAL frames for every touched
 * page, the FTS index flush, the auto-checkpoint), so a process answering many small writes at
 * once (the api under load, the scheduler reading a page of stage events) spends most of its
 * time committing. Here every `run(fn)` joins the next batch; the batch runs on setImmediate in
 * one BEGIN IMMEDIATE … COMMIT. If one write throws, the batch is rolled back and run again with
 * each write in its own savepoint, so that write alone is rejected. A promise resolves only
 * after the COMMIT: a caller never acts on (or answers for) a write that is not durable yet.
 * Writes must therefore be plain synchronous SQLite work with no side effects outside it.
 */
export interface GroupCommit {
  run<T>(write: () => T): Promise<T>;
  /** Commits whatever is queued now, synchronously (shutdown). */
  flush(): void;
  /** Writes queued and not yet committed. */
  readonly pending: number;
}

export interface GroupCommitOptions {
  /** Most writes in one transaction; the rest go in the next. Default 256. */
  maxBatch?: number;
  /** Called after each commit with its size, e.g. for a histogram. */
  onCommit?: (size: number, ms: number) => void;
}

interface Pending {
  write: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export function createGroupCommit(db: Database, opts: GroupCommitOptions = {}): GroupCommit {
  const maxBatch = opts.maxBatch ?? 256;
  let queue: Pending[] = [];
  let scheduled = false;

  type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };

  // Fast path: every write straight into the one transaction. A throw rolls the batch back
  // (nothing of it is kept) and the batch is run again the careful way.
  class WriteFailed extends Error {
    constructor(override readonly cause: unknown) {
      super('a write of the batch failed');
    }
  }
  const commitAll = db.transaction((batch: readonly Pending[]): Outcome[] =>
    batch.map((p) => {
      try {
        return { ok: true, value: p.write() };
      } catch (err) {
        throw new WriteFailed(err);
      }
    }),
  );

  // Careful path: each write in a SAVEPOINT (a nested better-sqlite3 transaction), so a
  // failing write is rolled back and rejected alone. Savepoints copy every page they touch,
  // which is why they are not the default.
  const inSavepoint = db.transaction((write: () => unknown) => write());
  const commitEach = db.transaction((batch: readonly Pending[]): Outcome[] =>
    batch.map((p) => {
      try {
        return { ok: true, value: inSavepoint(p.write) };
      } catch (err) {
        return { ok: false, err };
      }
    }),
  );

  function commit(batch: readonly Pending[]): Outcome[] {
    try {
      return commitAll.immediate(batch);
    } catch (err) {
      // BEGIN/COMMIT failures (busy past the timeout) are the whole batch's: no second try.
      if (!(err instanceof WriteFailed)) throw err;
      if (batch.length === 1) return [{ ok: false, err: err.cause }];
      return commitEach.immediate(batch);
    }
  }

  function flush(): void {
    scheduled = false;
    while (queue.length > 0) {
      const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
      queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
      const started = performance.now();
      let outcomes;
      try {
        outcomes = commit(batch);
      } catch (err) {
        // BEGIN or COMMIT failed (e.g. busy past the timeout): nothing of the batch was written.
        for (const p of batch) p.reject(err);
        continue;
      }
      opts.onCommit?.(batch.length, performance.now() - started);
      outcomes.forEach((o, i) => (o.ok ? batch[i]!.resolve(o.value) : batch[i]!.reject(o.err)));
    }
  }

  return {
    run<T>(write: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ write, resolve: resolve as (v: unknown) => void, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
    flush,
    get pending() {
      return queue.length;
    },
  };
}
