/**
 * Schema migrations, applied in order by migrate.ts. A shipped migration is never edited:
 * change the schema by appending a new one. Value lists in CHECK constraints are frozen here on
 * purpose (test/open-migrate.test.ts checks they still match the contracts).
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

// The contracts' JOB_STATES as of this migration, in order: the order gives the state codes.
const STATES_V1 = ['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'DUBBING', 'DUBBED', 'MUXING', 'COMPLETE', 'FAILED', 'CANCELED'];
const JOB_STATES_SQL = STATES_V1.map((st) => `'${st}'`).join(', ');

/**
 * Key of a job's row in jobs_fts: (seq << 12) | (owner code << 4) | state code. Ordering by it is
 * ordering by seq, and a search can filter its hits by owner and state from the key alone,
 * without reading the jobs table. Owner code = users.num, or 255 for num >= 255 (then checked
 * against the row). State code = position in JOB_STATES. list-jobs.ts decodes it. (Frozen as of v1:
 * v2 below replaces the state code with a state class.)
 */
function searchKey(row: 'new' | 'old'): string {
  return `((${row}.seq << 12)
    | (min(coalesce((SELECT num FROM users WHERE id = ${row}.owner_id), 255), 255) << 4)
    | (CASE ${row}.state ${STATES_V1.map((st, i) => `WHEN '${st}' THEN ${i}`).join(' ')} ELSE 15 END))`;
}

const initial = /* sql */ `
CREATE TABLE users (
  id            TEXT PRIMARY KEY,
  username      TEXT NOT NULL COLLATE NOCASE UNIQUE,
  password_hash TEXT NOT NULL,
  role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
  disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
  created_at    TEXT NOT NULL,
  num           INTEGER UNIQUE              -- small number for the search key (set by trigger)
);
CREATE TRIGGER users_num AFTER INSERT ON users WHEN new.num IS NULL BEGIN
  UPDATE users SET num = (SELECT coalesce(max(num), 0) + 1 FROM users) WHERE id = new.id;
END;
-- The search keys of a user's jobs embed it.
CREATE TRIGGER users_num_fixed BEFORE UPDATE OF num ON users
  WHEN old.num IS NOT NULL AND new.num IS NOT old.num
BEGIN
  SELECT RAISE(ABORT, 'users.num never changes');
END;

CREATE TABLE sessions (
  id         TEXT PRIMARY KEY,            -- the JWT's session id
  user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  csrf_token TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  revoked_at TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expires ON sessions(expires_at);

CREATE TABLE api_tokens (
  id           TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name         TEXT NOT NULL,
  token_hash   TEXT NOT NULL UNIQUE,
  created_at   TEXT NOT NULL,
  last_used_at TEXT,
  expires_at   TEXT,
  revoked_at   TEXT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

-- seq is the rowid, declared so VACUUM never renumbers it: it orders listings newest first and
-- is the high part of the jobs_fts key. id (UUID v7) is the public key everything else references.
CREATE TABLE jobs (
  seq               INTEGER PRIMARY KEY AUTOINCREMENT,
  id                TEXT NOT NULL UNIQUE,
  owner_id          TEXT NOT NULL REFERENCES users(id),
  url               TEXT NOT NULL,
  requested_dubbing INTEGER NOT NULL DEFAULT 0 CHECK (requested_dubbing IN (0, 1)),
  target_lang       TEXT,
  format_preset     TEXT NOT NULL,
  output_container  TEXT NOT NULL,
  state             TEXT NOT NULL CHECK (state IN (${JOB_STATES_SQL})),
  generation        INTEGER NOT NULL DEFAULT 0 CHECK (generation >= 0),
  attempt           INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  failed_stage      TEXT CHECK (failed_stage IN ('download', 'dub', 'mux')),
  error_code        TEXT,
  error_message     TEXT,
  hold_reason       TEXT,
  checkpoint        TEXT CHECK (checkpoint IS NULL OR json_valid(checkpoint)),
  progress_stage      TEXT CHECK (progress_stage IN ('download', 'dub', 'mux')),
  progress_percent    REAL,
  progress_speed      REAL,
  progress_eta        REAL,
  progress_step       TEXT,
  progress_updated_at TEXT,
  output_path       TEXT,
  title             TEXT,                 -- copy of the source media title (trigger), for search
  idempotency_key   TEXT,
  request_hash      TEXT,
  created_at        TEXT NOT NULL,
  updated_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs(owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Newest-first listings: by state (admin), by owner, by owner and state.
CREATE INDEX jobs_state_seq ON jobs(state, seq);
CREATE INDEX jobs_owner_seq ON jobs(owner_id, seq);
CREATE INDEX jobs_owner_state_seq ON jobs(owner_id, state, seq);

CREATE TABLE media (
  id           INTEGER PRIMARY KEY,
  job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  kind         TEXT NOT NULL CHECK (kind IN ('source', 'subtitles', 'dubbed_audio', 'output')),
  path         TEXT NOT NULL,             -- relative to MEDIA_ROOT
  size_bytes   INTEGER,
  duration_sec REAL,
  width        INTEGER,
  height       INTEGER,
  video_codec  TEXT,
  audio_codec  TEXT,
  language     TEXT,
  title        TEXT,
  source_url   TEXT,
  created_at   TEXT NOT NULL,
  UNIQUE (job_id, kind)                   -- a stage result written twice stays one row
);

CREATE TABLE job_events (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: clients resume "after" an id
  job_id     TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  type       TEXT NOT NULL CHECK (type IN ('created', 'state_change', 'log', 'error', 'progress', 'control', 'hold', 'repair')),
  level      TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
  message    TEXT NOT NULL DEFAULT '',
  payload    TEXT CHECK (payload IS NULL OR json_valid(payload)),
  created_at TEXT NOT NULL
);
CREATE INDEX job_events_job ON job_events(job_id, id);

-- job_id is deliberately not a foreign key: the job_removed message of a deleted job must survive.
CREATE TABLE outbox (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id       TEXT,
  kind         TEXT NOT NULL CHECK (kind IN ('enqueue', 'publish')),
  payload      TEXT NOT NULL CHECK (json_valid(payload)),
  created_at   TEXT NOT NULL,
  available_at TEXT NOT NULL,
  delivered_at TEXT,
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT
);
CREATE INDEX outbox_pending ON outbox(available_at) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered ON outbox(delivered_at) WHERE delivered_at IS NOT NULL;

-- Per-(owner, state) job counts kept by triggers, so list totals without a search are O(1).
CREATE TABLE job_counts (
  owner_id TEXT NOT NULL,
  state    TEXT NOT NULL,
  n        INTEGER NOT NULL,
  PRIMARY KEY (owner_id, state)
) WITHOUT ROWID;

CREATE TRIGGER jobs_counts_insert AFTER INSERT ON jobs BEGIN
  INSERT INTO job_counts (owner_id, state, n) VALUES (new.owner_id, new.state, 1)
    ON CONFLICT (owner_id, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_counts_delete AFTER DELETE ON jobs BEGIN
  UPDATE job_counts SET n = n - 1 WHERE owner_id = old.owner_id AND state = old.state;
END;
CREATE TRIGGER jobs_counts_update AFTER UPDATE OF state, owner_id ON jobs
  WHEN old.state IS NOT new.state OR old.owner_id IS NOT new.owner_id
BEGIN
  UPDATE job_counts SET n = n - 1 WHERE owner_id = old.owner_id AND state = old.state;
  INSERT INTO job_counts (owner_id, state, n) VALUES (new.owner_id, new.state, 1)
    ON CONFLICT (owner_id, state) DO UPDATE SET n = n + 1;
END;

-- Substring search over the URL and the source media title. Trigram tokens make any substring of
-- 3+ characters an index lookup. Contentless (the text lives in jobs); the rowid is the search key.
CREATE VIRTUAL TABLE jobs_fts USING fts5(url, title, tokenize = 'trigram', content = '', contentless_delete = 1);
-- Jobs arrive one per transaction, each adding a tiny segment: merge eagerly so lookups stay cheap.
INSERT INTO jobs_fts (jobs_fts, rank) VALUES ('automerge', 2);

CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN
  INSERT INTO jobs_fts (rowid, url, title) VALUES (${searchKey('new')}, new.url, new.title);
END;
CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN
  DELETE FROM jobs_fts WHERE rowid = ${searchKey('old')};
END;
-- A state change moves the row to a new key.
CREATE TRIGGER jobs_fts_update AFTER UPDATE OF url, title, state, owner_id ON jobs
  WHEN old.url IS NOT new.url OR old.title IS NOT new.title OR old.state IS NOT new.state OR old.owner_id IS NOT new.owner_id
BEGIN
  DELETE FROM jobs_fts WHERE rowid = ${searchKey('old')};
  INSERT INTO jobs_fts (rowid, url, title) VALUES (${searchKey('new')}, new.url, new.title);
END;

-- jobs.title follows the source media row. While a job is being deleted these find no row.
CREATE TRIGGER media_title_insert AFTER INSERT ON media WHEN new.kind = 'source' BEGIN
  UPDATE jobs SET title = new.title WHERE id = new.job_id AND title IS NOT new.title;
END;
CREATE TRIGGER media_title_update AFTER UPDATE OF title, kind, job_id ON media
  WHEN old.kind = 'source' OR new.kind = 'source'
BEGIN
  UPDATE jobs SET title = (SELECT m.title FROM media m WHERE m.job_id = jobs.id AND m.kind = 'source')
  WHERE id IN (old.job_id, new.job_id);
END;
CREATE TRIGGER media_title_delete AFTER DELETE ON media WHEN old.kind = 'source' BEGIN
  UPDATE jobs SET title = NULL WHERE id = old.job_id AND title IS NOT NULL;
END;
`;

/**
 * v2: the search key's low 4 bits hold a state *class* instead of the state: 0 for every active
 * state (QUEUED … MUXING), the state's own code for COMPLETE, FAILED and CANCELED. A job then
 * moves to a new key only when it ends or is retried, not on each of its six transitions: the
 * re-key (a delete and a re-tokenised insert into the trigram index) was two thirds of a
 * transition's SQLite cost (bench/sqlite-costs.mjs). Terminal and QUEUED codes are unchanged, so
 * only rows in DOWNLOADING … MUXING move. list-jobs.ts checks the row for a filter on some but
 * not all active states.
 */
const ACTIVE_V2 = STATES_V1.slice(0, 6);
/** A state's class code as of v2 (15: unknown). */
function classCodeV2(state: string): number {
  const i = STATES_V1.indexOf(state);
  if (i < 0) return 15;
  return ACTIVE_V2.includes(state) ? 0 : i;
}
function stateClassCode(state: string): string {
  return `(CASE ${state} ${STATES_V1.map((st) => `WHEN '${st}' THEN ${classCodeV2(st)}`).join(' ')} ELSE 15 END)`;
}
function searchKeyV2(row: 'new' | 'old'): string {
  return `((${row}.seq << 12)
    | (min(coalesce((SELECT num FROM users WHERE id = ${row}.owner_id), 255), 255) << 4)
    | ${stateClassCode(`${row}.state`)})`;
}
const movingActive = ACTIVE_V2.slice(1).map((st) => `'${st}'`).join(', ');

const classKeys = /* sql */ `
DROP TRIGGER jobs_fts_insert;
DROP TRIGGER jobs_fts_delete;
DROP TRIGGER jobs_fts_update;

DELETE FROM jobs_fts WHERE rowid IN (SELECT ${searchKey('old').replaceAll('old.', 'j.')} FROM jobs j WHERE j.state IN (${movingActive}));
INSERT INTO jobs_fts (rowid, url, title)
  SELECT ${searchKeyV2('new').replaceAll('new.', 'j.')}, j.url, j.title FROM jobs j WHERE j.state IN (${movingActive});

CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN
  INSERT INTO jobs_fts (rowid, url, title) VALUES (${searchKeyV2('new')}, new.url, new.title);
END;
CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN
  DELETE FROM jobs_fts WHERE rowid = ${searchKeyV2('old')};
END;
-- Only a change of text, owner or state class moves the row to a new key.
CREATE TRIGGER jobs_fts_update AFTER UPDATE OF url, title, state, owner_id ON jobs
  WHEN old.url IS NOT new.url OR old.title IS NOT new.title OR old.owner_id IS NOT new.owner_id
    OR ${stateClassCode('old.state')} IS NOT ${stateClassCode('new.state')}
BEGIN
  DELETE FROM jobs_fts WHERE rowid = ${searchKeyV2('old')};
  INSERT INTO jobs_fts (rowid, url, title) VALUES (${searchKeyV2('new')}, new.url, new.title);
END;
`;

/**
 * v3: a delivered outbox row is deleted, not marked. Marking moved the row between two partial
 * indexes and a daily purge deleted it again (three writes per message, ~10 messages per job),
 * and that purge was one DELETE of a whole day's rows on the scheduler's event loop. Every row
 * left in the table is now pending; job_events keeps the history.
 */
const outboxDeletesDelivered = /* sql */ `
DELETE FROM outbox WHERE delivered_at IS NOT NULL;
DROP INDEX outbox_delivered;
DROP INDEX outbox_pending;
ALTER TABLE outbox DROP COLUMN delivered_at;
CREATE INDEX outbox_due ON outbox(available_at);
`;

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial', sql: initial },
  { version: 2, name: 'search key state classes', sql: classKeys },
  { version: 3, name: 'outbox deletes delivered rows', sql: outboxDeletesDelivered },
];

/** The search key's state code (as of the latest migration): list-jobs.ts filters on it. */
export const searchStateCode: (state: string) => number = classCodeV2;
/** States that share search code 0. */
export const SEARCH_ACTIVE_STATES: readonly string[] = ACTIVE_V2;

/** The state list (and codes) frozen in the schema, exported for the consistency test. */
export const SCHEMA_JOB_STATES: readonly string[] = STATES_V1;
