import type { Database } from 'better-sqlite3';

/**
 * Housekeeping for the search index. Every job insert or state change writes a small segment;
 * FTS5 merges them as it goes (automerge), and a search touches every remaining segment, so the
 * scheduler calls mergeSearchIndex now and then to keep lookups at their fastest.
 */

/**
 * Does up to `pages` pages of incremental merge work. Returns true when there was something to
 * merge (call again later), false when the index is already compact.
 */
export function mergeSearchIndex(db: Database, pages = 500): boolean {
  // FTS5's documented test: the merge did work when total_changes() moved by 2 or more.
  const changes = db.prepare('SELECT total_changes()').pluck();
  const before = changes.get() as number;
  db.prepare(`INSERT INTO jobs_fts (jobs_fts, rank) VALUES ('merge', ?)`).run(Math.max(16, Math.trunc(pages)));
  return (changes.get() as number) - before >= 2;
}

/** Merges the whole search index into one segment. Seconds at a million jobs: run it off-peak. */
export function optimizeSearchIndex(db: Database): void {
  db.prepare(`INSERT INTO jobs_fts (jobs_fts) VALUES ('optimize')`).run();
}

/** Updates planner statistics (cheap; SQLite limits the work). */
export function optimizeDatabase(db: Database): void {
  db.pragma('optimize');
}
