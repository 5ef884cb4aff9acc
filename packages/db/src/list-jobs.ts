import type { Database } from 'better-sqlite3';
import type { Job } from '@dubgate/contracts/jobs';
import { JOB_STATES, type JobState } from '@dubgate/contracts/states';
import { decodeCursor, encodeCursor } from './cursor.js';
import { SEARCH_ACTIVE_STATES, searchStateCode } from './migrations.js';
import { toJob, type JobRow } from './rows.js';

export interface ListJobsFilters {
  /** Only this owner's jobs; absent means every job (admin). */
  ownerId?: string | null;
  /** Only jobs in one of these states; absent or empty means any state. */
  statuses?: readonly JobState[] | null;
  /** Case-insensitive substring of the URL or of the source media title (see normalizeSearch). */
  search?: string | null;
  limit: number;
  /** From a previous page's nextCursor. */
  cursor?: string | null;
  /** Items to skip (after the cursor, when both are given). */
  offset?: number | null;
}

export interface ListJobsResult {
  /** Newest first. */
  items: Job[];
  total: number;
  /** False when `total` was capped (broad search): it is then a lower bound. */
  totalExact: boolean;
  nextCursor: string | null;
}

/**
 * Bounds that keep a listing cheap at millions of rows (see bench/list-jobs.bench.mjs); tests
 * shrink them to reach every branch.
 */
export interface ListJobsTuning {
  /** A search counts at most this many index hits; beyond it `totalExact` is false. */
  searchCountCap: number;
  /**
   * ...and about this long: the cost of a hit varies a lot with the term (its commonest trigrams),
   * so it is measured on the first pass and the count capped to fit this budget.
   */
  countTimeBudgetMs: number;
  /** A search with at most this many hits reads them all in one pass: exact total, no walk. */
  fewHitsLimit: number;
  /** When the owner/status filter leaves at most this many jobs, a search tests them all (exact). */
  smallSetLimit: number;
  /**
   * Safety net: most index hits one page may examine. A page walk stops as soon as the page is
   * full, so this only bites when the filters match almost none of a very broad search's hits;
   * the page then comes back short and its nextCursor continues where the walk stopped (an
   * offset client would skip what lies beyond). It keeps such a query from holding the
   * (synchronous) database for long.
   */
  scanBudget: number;
  /**
   * Terms under 3 characters cannot use the trigram index: their count looks at this many of the
   * newest rows at most (a page walk is bounded by half the scanBudget, LIKE costing more per row).
   */
  likeScanLimit: number;
}

export const DEFAULT_LIST_TUNING: Readonly<ListJobsTuning> = {
  searchCountCap: 10_000,
  countTimeBudgetMs: 3,
  fewHitsLimit: 500,
  smallSetLimit: 2_000,
  scanBudget: 100_000,
  likeScanLimit: 5_000,
};

export const MAX_LIST_LIMIT = 1000;
/** Trigram search needs 3 characters; shorter terms use LIKE. */
const MIN_FTS_TERM = 3;
// Past any seq; shifted left by KEY_BITS it still fits in 63 bits.
const NO_CURSOR = 2 ** 50;
// Every code a key can carry (0–15).
const ALL_STATES_MASK = 0xffff;
// Newest-first walks cost FTS5 about this much more than oldest-first ones.
const DESC_FACTOR = 1.5;
// Fewer hits than this are too few to time reliably.
const MIN_TIMED_HITS = 200;
const MIN_COUNT_CAP = 1_000;

/**
 * Every URL starts with a scheme and often www.: those trigrams are in nearly every row, and a
 * phrase made of them walks the whole index. So a leading `http://`, `https://` or `www.` is
 * ignored when at least 3 characters remain ("https://youtu.be/x1" finds "http://youtu.be/x1" too).
 */
export function normalizeSearch(search: string | null | undefined): string {
  const term = (search ?? '').trim();
  const rest = term.replace(/^(?:https?:\/\/)?(?:www\.)?/i, '');
  return [...rest].length >= MIN_FTS_TERM ? rest : term;
}

/**
 * What to ask the trigram index for. A phrase costs about the size of the doclists of its
 * commonest trigrams (`vid`, `com`, `/wa`...), so a long term such as a pasted URL is looked up
 * by its most id-like word (digits or mixed case: `5115203631`, `dQw4w9WgXcQ`) and the whole
 * term is then checked with LIKE on the few rows found.
 */
export function searchPlan(term: string): { phrase: string; verify: boolean } {
  if ([...term].length <= 12) return { phrase: term, verify: false };
  const ids = term
    .split(/[/?=&.:#@,+\s]+/)
    .filter((w) => [...w].length >= 5 && (/\d/.test(w) || (/[a-z]/.test(w) && /[A-Z]/.test(w))));
  if (ids.length === 0) return { phrase: term, verify: false };
  const best = ids.reduce((a, b) => ([...b].length > [...a].length ? b : a));
  return { phrase: best, verify: best !== term };
}

/** Trigrams in a phrase: costs grow with it, so caps shrink for long phrases. */
const REFERENCE_TRIGRAMS = 5;
function scaled(limit: number, trigrams: number): number {
  return Math.max(1, Math.floor(limit * Math.min(1, REFERENCE_TRIGRAMS / Math.max(1, trigrams))));
}

function likePattern(term: string): string {
  return `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function ftsPhrase(term: string): string {
  return `"${term.replace(/"/g, '""')}"`;
}

function clampInt(value: number | null | undefined, min: number, max: number, fallback: number): number {
  if (value === null || value === undefined || !Number.isFinite(value)) return fallback;
  return Math.min(max, Math.max(min, Math.trunc(value)));
}

// --- SQL fragments -----------------------------------------------------------------------------

// Filters applied to each candidate row (bound NULL = not filtering).
const FILTER = `(@owner IS NULL OR j.owner_id = @owner)
  AND (@states IS NULL OR j.state IN (SELECT value FROM json_each(@states)))`;
// Same meaning as the trigram search, for short terms, small sets and checks. LIKE folds ASCII case only.
const LIKE = (t: string) => `(${t}.url LIKE @pattern ESCAPE '\\' OR ${t}.title LIKE @pattern ESCAPE '\\')`;

// Search hits newest first (below a cursor). The key (see migrations.ts) is (seq << 12 | owner code << 4 | state
// class), so owner and state class are tested on the key itself: no read of the jobs table per hit.
const KEY_BITS = 12;
const OWNER_OVERFLOW = 255;
const FTS_HITS = `SELECT rowid AS k FROM jobs_fts WHERE jobs_fts MATCH @q AND rowid < (@before << ${KEY_BITS}) ORDER BY rowid DESC`;
const KEY_FILTER = `((@stateMask >> (h.k & 15)) & 1) = 1 AND (@ownerCode IS NULL OR ((h.k >> 4) & 255) = @ownerCode)`;
// The row is read only for owners sharing the overflow code, to check a long term, or for an active
// hit (class 0) when the filter names some active states but not all: then @activeStates is ',A,B,'.
const NEEDS_ROW = `(@ownerCode IS ${OWNER_OVERFLOW} OR @verify = 1 OR (@activeStates IS NOT NULL AND (h.k & 15) = 0))`;
const KEY_MATCH = `CASE WHEN NOT (${KEY_FILTER}) THEN 0
  WHEN NOT ${NEEDS_ROW} THEN 1
  ELSE EXISTS (SELECT 1 FROM jobs x WHERE x.seq = (h.k >> ${KEY_BITS})
               AND (@owner IS NULL OR x.owner_id = @owner) AND (@verify = 0 OR ${LIKE('x')})
               AND (@activeStates IS NULL OR (h.k & 15) <> 0 OR instr(@activeStates, ',' || x.state || ',') > 0)) END`;

interface KeyParams {
  stateMask: number;
  /** Set when the filter names some but not all active states (they share one key class). */
  activeStates: string | null;
  ownerCode: number | null;
  owner: string | null;
  verify: 0 | 1;
  pattern: string;
}

/** The key filter for a set of states (null: any state). */
function stateKeyFilter(states: readonly string[] | null): Pick<KeyParams, 'stateMask' | 'activeStates'> {
  if (!states) return { stateMask: ALL_STATES_MASK, activeStates: null };
  const active = states.filter((st) => SEARCH_ACTIVE_STATES.includes(st));
  return {
    stateMask: states.reduce((m, st) => m | (1 << searchStateCode(st)), 0),
    activeStates: active.length === 0 || active.length === SEARCH_ACTIVE_STATES.length ? null : `,${active.join(',')},`,
  };
}

interface Page {
  rows: JobRow[];
  /** Set when the scan budget ran out before the page filled: where to continue. */
  resumeAt: number | null;
}

export function createJobLister(db: Database, tuning: Readonly<ListJobsTuning> = DEFAULT_LIST_TUNING) {
  const count = db
    .prepare<{ owner: string | null; states: string | null }, number>(
      `SELECT coalesce(sum(n), 0) FROM job_counts
       WHERE (@owner IS NULL OR owner_id = @owner)
         AND (@states IS NULL OR state IN (SELECT value FROM json_each(@states)))`,
    )
    .pluck();
  const bySeqs = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE seq IN (SELECT value FROM json_each(?))');

  // --- no search: indexes give newest-first order directly ------------------------------------
  const newest = db.prepare<{ before: number; n: number; off: number }, JobRow>(
    'SELECT * FROM jobs WHERE seq < @before ORDER BY seq DESC LIMIT @n OFFSET @off',
  );
  const ownerNewest = db.prepare<{ owner: string; before: number; n: number; off: number }, JobRow>(
    'SELECT * FROM jobs WHERE owner_id = @owner AND seq < @before ORDER BY seq DESC LIMIT @n OFFSET @off',
  );
  // One index range per state, merged here: SQLite cannot merge several IN ranges in order.
  const stateSeqs = db
    .prepare<{ state: string; before: number; n: number }, number>(
      'SELECT seq FROM jobs WHERE state = @state AND seq < @before ORDER BY seq DESC LIMIT @n',
    )
    .pluck();
  const ownerStateSeqs = db
    .prepare<{ owner: string; state: string; before: number; n: number }, number>(
      'SELECT seq FROM jobs WHERE owner_id = @owner AND state = @state AND seq < @before ORDER BY seq DESC LIMIT @n',
    )
    .pluck();

  // --- search within a small filtered set: test every row, exact total ---------------------------
  // Per state again: the planner would not use the index for IN (json_each(...)).
  const smallOwner = db
    .prepare<{ owner: string; pattern: string }, number>(`SELECT seq FROM jobs j WHERE j.owner_id = @owner AND ${LIKE('j')}`)
    .pluck();
  const smallState = db
    .prepare<{ state: string; pattern: string }, number>(`SELECT seq FROM jobs j WHERE j.state = @state AND ${LIKE('j')}`)
    .pluck();
  const smallOwnerState = db
    .prepare<{ owner: string; state: string; pattern: string }, number>(
      `SELECT seq FROM jobs j WHERE j.owner_id = @owner AND j.state = @state AND ${LIKE('j')}`,
    )
    .pluck();

  // --- search through the trigram index -----------------------------------------------------
  const ownerCodeOf = db.prepare<[string], number | null>('SELECT num FROM users WHERE id = ?').pluck();
  // One number per hit: its seq when it passes the filters, minus its seq when not.
  const SIGNED_SEQ = `CASE WHEN (${KEY_MATCH}) = 1 THEN k >> ${KEY_BITS} ELSE -(k >> ${KEY_BITS}) END`;
  // Oldest first is FTS5's cheap direction (newest first buffers each doclist page).
  const fewHits = db
    .prepare<{ q: string; few: number } & KeyParams, number>(
      `SELECT ${SIGNED_SEQ} FROM (SELECT rowid AS k FROM jobs_fts WHERE jobs_fts MATCH @q LIMIT @few) h`,
    )
    .pluck();
  // The newest hits, from the top: what the total is counted on, and usually the page too.
  const window = db
    .prepare<{ q: string; cap: number } & KeyParams, number>(
      `SELECT ${SIGNED_SEQ} FROM (SELECT rowid AS k FROM jobs_fts WHERE jobs_fts MATCH @q ORDER BY rowid DESC LIMIT @cap) h`,
    )
    .pluck();
  // Matching seqs newest first below `before`; LIMIT stops the walk once enough are found.
  const ftsWalk = db
    .prepare<{ q: string; before: number; budget: number; n: number } & KeyParams, number>(
      `SELECT k >> ${KEY_BITS} FROM (${FTS_HITS} LIMIT @budget) h WHERE (${KEY_MATCH}) = 1 LIMIT @n`,
    )
    .pluck();
  const ftsBoundary = db
    .prepare<{ q: string; before: number; skip: number }, number>(
      `SELECT k >> ${KEY_BITS} FROM (${FTS_HITS} LIMIT 2 OFFSET @skip)`,
    )
    .pluck();

  // --- terms too short for trigrams: LIKE while walking an index range newest first -------------
  const likeCount = db.prepare<{ cap: number; owner: string | null; states: string | null; pattern: string }, { hits: number; matched: number }>(
    `SELECT count(*) AS hits, coalesce(sum(x), 0) AS matched
     FROM (SELECT (${FILTER} AND ${LIKE('j')}) AS x FROM jobs j ORDER BY j.seq DESC LIMIT @cap)`,
  );
  type RangeParams = { owner: string | null; state: string | null; before: number };
  /** A walk over one index range: matches among its first `budget` rows, and the range's row at `skip`. */
  function rangeWalk(where: string) {
    const range = `SELECT seq FROM jobs WHERE ${where} seq < @before ORDER BY seq DESC`;
    return {
      matches: db
        .prepare<RangeParams & { budget: number; pattern: string; n: number }, number>(
          `SELECT j.seq FROM (${range} LIMIT @budget) h CROSS JOIN jobs j ON j.seq = h.seq WHERE ${LIKE('j')} LIMIT @n`,
        )
        .pluck(),
      edge: db.prepare<RangeParams & { skip: number }, number>(`${range} LIMIT 2 OFFSET @skip`).pluck(),
    };
  }
  // Unused parameters are bound to NULL and ignored.
  const walks = {
    all: rangeWalk('(@owner IS NULL) AND (@state IS NULL) AND'),
    owner: rangeWalk('owner_id = @owner AND (@state IS NULL) AND'),
    state: rangeWalk('(@owner IS NULL) AND state = @state AND'),
    ownerState: rangeWalk('owner_id = @owner AND state = @state AND'),
  };

  /**
   * Newest-first matches across several index ranges (one per state), each walking at most
   * `budget` rows. Returns the merged matches that are complete (nothing missing above the
   * lowest one) and, when a range ran out of budget first, where to resume.
   */
  function likeWalk(owner: string | null, states: readonly string[] | null, pattern: string, before: number, need: number, budget: number) {
    const walk = states ? (owner ? walks.ownerState : walks.state) : owner ? walks.owner : walks.all;
    let watermark = -1; // every match at or above it has been seen
    const found: number[] = [];
    for (const state of states ?? [null]) {
      const p = { owner, state, before };
      const seqs = walk.matches.all({ ...p, budget, pattern, n: need });
      found.push(...seqs);
      if (seqs.length === need) {
        watermark = Math.max(watermark, seqs[seqs.length - 1]!);
      } else {
        // Fewer matches than wanted: the range either ended or ran out of budget at its edge.
        const edge = walk.edge.all({ ...p, skip: budget - 1 });
        if (edge.length === 2) watermark = Math.max(watermark, edge[0]!);
      }
    }
    const seqs = found.filter((sq) => sq >= watermark).sort((a, b) => b - a);
    // A range that filled up puts `need` matches above the watermark; so a short list means the
    // watermark (if any) is where a range ran out of budget: the next page resumes there.
    return { seqs, resumeAt: seqs.length < need && watermark >= 0 ? watermark : null };
  }

  function rowsBySeq(seqs: number[]): JobRow[] {
    if (seqs.length === 0) return [];
    return bySeqs.all(JSON.stringify(seqs)).sort((a, b) => b.seq - a.seq);
  }

  return function listJobs(filters: ListJobsFilters): ListJobsResult {
    const limit = clampInt(filters.limit, 1, MAX_LIST_LIMIT, 50);
    const offset = clampInt(filters.offset, 0, Number.MAX_SAFE_INTEGER, 0);
    const before = filters.cursor ? decodeCursor(filters.cursor) : NO_CURSOR;
    const owner = filters.ownerId ?? null;
    let states = filters.statuses && filters.statuses.length > 0 ? [...new Set(filters.statuses)] : null;
    if (states) {
      states = states.filter((s) => (JOB_STATES as readonly string[]).includes(s));
      if (states.length === 0) return { items: [], total: 0, totalExact: true, nextCursor: null };
      // A filter naming every state filters nothing.
      if (states.length === JOB_STATES.length) states = null;
    }
    const statesJson = states ? JSON.stringify(states) : null;
    const term = normalizeSearch(filters.search);
    const want = offset + limit + 1; // one extra tells whether another page exists

    const finish = (page: Page, total: number, totalExact: boolean): ListJobsResult => {
      const more = page.rows.length > limit;
      const rows = more ? page.rows.slice(0, limit) : page.rows;
      // A capped count may have missed rows this page shows; the bound must cover them.
      if (!totalExact && before === NO_CURSOR) total = Math.max(total, offset + rows.length + (more ? 1 : 0));
      let nextCursor: string | null = null;
      if (more) nextCursor = encodeCursor(rows[rows.length - 1]!.seq);
      else if (page.resumeAt !== null) nextCursor = encodeCursor(page.resumeAt);
      return { items: rows.map(toJob), total, totalExact, nextCursor };
    };
    /** A page cut from a complete, newest-first list of matching seqs. */
    const fromSeqs = (seqs: number[]): ListJobsResult => {
      seqs.sort((a, b) => b - a);
      const pageSeqs = seqs.filter((s) => s < before).slice(offset, offset + limit + 1);
      return finish({ rows: rowsBySeq(pageSeqs), resumeAt: null }, seqs.length, true);
    };

    const setSize = count.get({ owner, states: statesJson }) ?? 0;

    // No search: exact totals from job_counts, pages straight off an index.
    if (term.length === 0) {
      let rows: JobRow[];
      if (!states) {
        rows = owner === null
          ? newest.all({ before, n: limit + 1, off: offset })
          : ownerNewest.all({ owner, before, n: limit + 1, off: offset });
      } else {
        const lists = states.map((state) =>
          owner === null
            ? stateSeqs.all({ state, before, n: want })
            : ownerStateSeqs.all({ owner, state, before, n: want }),
        );
        rows = rowsBySeq(lists.flat().sort((a, b) => b - a).slice(offset, want));
      }
      return finish({ rows, resumeAt: null }, setSize, true);
    }

    const pattern = likePattern(term);

    // Few jobs pass the owner/status filter: test each of them, which also gives an exact total.
    if ((owner !== null || states) && setSize <= tuning.smallSetLimit) {
      if (states === null) return fromSeqs(smallOwner.all({ owner: owner!, pattern }));
      if (owner === null) return fromSeqs(states.flatMap((state) => smallState.all({ state, pattern })));
      return fromSeqs(states.flatMap((state) => smallOwnerState.all({ owner, state, pattern })));
    }

    if ([...term].length >= MIN_FTS_TERM) {
      const plan = searchPlan(term);
      const q = ftsPhrase(plan.phrase);
      const trigrams = [...plan.phrase].length - 2;
      const key: KeyParams = {
        ...stateKeyFilter(states),
        ownerCode: null,
        owner,
        verify: plan.verify ? 1 : 0,
        pattern,
      };
      if (owner !== null) {
        const num = ownerCodeOf.get(owner);
        if (num === undefined || num === null) return { items: [], total: 0, totalExact: true, nextCursor: null };
        key.ownerCode = Math.min(num, OWNER_OVERFLOW);
      }

      // Few hits (a pasted URL, a video id): take them all in one pass.
      const started = performance.now();
      const few = fewHits.all({ q, few: tuning.fewHitsLimit + 1, ...key });
      if (few.length <= tuning.fewHitsLimit) return fromSeqs(few.filter((sq) => sq > 0));

      // Many hits: how much one costs for this term decides how many to count (about
      // countTimeBudgetMs of work, newest first).
      const msPerHit = few.length >= MIN_TIMED_HITS ? (performance.now() - started) / few.length : null;
      const most = tuning.searchCountCap;
      const cap = msPerHit === null
        ? scaled(most, trigrams)
        : Math.max(Math.min(MIN_COUNT_CAP, most), Math.min(most, Math.floor(tuning.countTimeBudgetMs / DESC_FACTOR / msPerHit)));
      const top = window.all({ q, cap: cap + 1, ...key });
      const exact = top.length <= cap;
      const matched = top.filter((sq) => sq > 0);
      const total = exact ? matched.length : Math.min(matched.length, cap);
      const seen = matched.filter((sq) => sq < before);
      if (exact || seen.length >= want) {
        const pageSeqs = seen.slice(offset, want);
        return finish({ rows: rowsBySeq(pageSeqs), resumeAt: null }, total, exact);
      }

      // Too few matches in the window: walk on below it (every hit from its bottom up has been
      // looked at), newest first, until the page fills.
      const from = Math.min(before, Math.abs(top[top.length - 1]!));
      const budget = Math.max(scaled(tuning.scanBudget, trigrams), want);
      const more = ftsWalk.all({ q, before: from, budget, n: want - seen.length, ...key });
      const rows = rowsBySeq([...seen, ...more].slice(offset, want));
      let resumeAt: number | null = null;
      if (more.length < want - seen.length) {
        // Short: the hits ran out, or the budget did (then say where to go on).
        const edge = ftsBoundary.all({ q, before: from, skip: budget - 1 });
        if (edge.length === 2) resumeAt = edge[0]!;
      }
      return finish({ rows, resumeAt }, total, false);
    }

    // Term too short for trigrams: LIKE along the index ranges of the filter, bounded.
    const r = likeCount.get({ cap: tuning.likeScanLimit + 1, owner, states: statesJson, pattern })!;
    const walked = likeWalk(owner, states, pattern, before, want, Math.max(Math.floor(tuning.scanBudget / 2), want));
    const rows = rowsBySeq(walked.seqs.slice(offset, want));
    return finish({ rows, resumeAt: walked.resumeAt }, r.matched, r.hits <= tuning.likeScanLimit);
  };
}

export type ListJobs = ReturnType<typeof createJobLister>;
