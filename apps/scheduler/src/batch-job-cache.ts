import type { Job } from '@dubgate/contracts/jobs';
import type { JobsRepository } from '@dubgate/db/jobs';
import type { JobCache } from './outcomes.js';

/**
 * The jobs of the event batch in hand, read in one statement when the batch arrives instead of
 * one read per event (a read outside a transaction takes its own WAL snapshot, about half its
 * cost), then kept current from the rows the scheduler's own transitions return. Emptied after
 * each batch, so an entry is never older than the batch; a change made meanwhile by the api
 * (cancel, retry) makes the next transition's compare-and-set refuse, which drops the entry.
 */
export interface BatchJobCache extends JobCache {
  load(ids: Iterable<string>): void;
  clear(): void;
}

export function createBatchJobCache(jobs: Pick<JobsRepository, 'getJob' | 'getJobs'>, chunk = 500): BatchJobCache {
  // null: known to be missing (deleted).
  let known = new Map<string, Job | null>();
  return {
    load(ids) {
      const wanted = [...new Set(ids)].filter((id) => !known.has(id));
      for (let i = 0; i < wanted.length; i += chunk) {
        const part = wanted.slice(i, i + chunk);
        for (const id of part) known.set(id, null);
        for (const job of jobs.getJobs(part)) known.set(job.id, job);
      }
    },
    get(id) {
      const hit = known.get(id);
      if (hit !== undefined) return hit;
      const job = jobs.getJob(id);
      known.set(id, job);
      return job;
    },
    remember(job) {
      known.set(job.id, job);
    },
    forget(id) {
      known.delete(id);
    },
    clear() {
      known = new Map();
    },
  };
}
