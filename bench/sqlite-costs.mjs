// What one job costs SQLite, measured on a fresh database with the real schema and repositories:
// the insert (job row + first event + two outbox rows) and each state transition (row update +
// event + outbox row), 64 per transaction as the group commit batches them. Then the same with
// the search index triggers dropped, to show what the trigram index costs on this write path.
//
//   node bench/sqlite-costs.mjs [--jobs 6400]
// Needs the built db package (turbo run build).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const root = new URL('..', import.meta.url).pathname;
const { openDatabase, closeDatabase } = await import(join(root, 'packages/db/dist/open.js'));
const { createJobsRepository } = await import(join(root, 'packages/db/dist/jobs-repository.js'));
const { createAuthRepository } = await import(join(root, 'packages/db/dist/auth-repository.js'));

const { values: args } = parseArgs({ options: { jobs: { type: 'string', default: '6400' } } });
const perBatch = 64;
const batches = Math.max(1, Math.round(Number(args.jobs) / perBatch));
const STEPS = [
  ['QUEUED', 'DOWNLOADING'],
  ['DOWNLOADING', 'DOWNLOADED'],
  ['DOWNLOADED', 'DUBBING'],
  ['DUBBING', 'DUBBED'],
  ['DUBBED', 'MUXING'],
  ['MUXING', 'COMPLETE'],
];

function measure(withSearchIndex) {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-sqlite-costs-'));
  const db = openDatabase(join(dir, 'gateway.db'));
  try {
    if (!withSearchIndex) db.exec('DROP TRIGGER jobs_fts_insert; DROP TRIGGER jobs_fts_update;');
    const created = createAuthRepository(db).createUser({ username: 'bench', passwordHash: 'x', role: 'user' });
    const jobs = createJobsRepository(db);
    const ids = [];
    let t = performance.now();
    for (let b = 0; b < batches; b++) {
      db.transaction(() => {
        for (let i = 0; i < perBatch; i++) {
          const r = jobs.insertJob({
            ownerId: created.user.id,
            url: `https://videos.example.com/watch?v=bench-${b}-${i}`,
            requestedDubbing: true,
            targetLang: 'es',
            formatPreset: '720p',
            outputContainer: 'mp4',
          });
          ids.push(r.job.id);
        }
      }).immediate();
    }
    const insertUs = ((performance.now() - t) * 1000) / ids.length;
    t = performance.now();
    for (const [from, to] of STEPS) {
      for (let b = 0; b < batches; b++) {
        db.transaction(() => {
          for (let i = 0; i < perBatch; i++) jobs.updateJobState(ids[b * perBatch + i], { from, to, reason: 'bench' });
        }).immediate();
      }
    }
    const transitionUs = ((performance.now() - t) * 1000) / (ids.length * STEPS.length);
    return { insertUs, transitionUs };
  } finally {
    closeDatabase(db);
    rmSync(dir, { recursive: true, force: true });
  }
}

const withIndex = measure(true);
const without = measure(false);
const perJob = (m) => m.insertUs + STEPS.length * m.transitionUs;
const rows = [
  ['insert (job + event + 2 outbox rows)', withIndex.insertUs, without.insertUs],
  ['one transition (update + event + outbox row)', withIndex.transitionUs, without.transitionUs],
  ['one job through all 6 transitions', perJob(withIndex), perJob(without)],
];
console.log(`SQLite CPU per operation, ${batches * perBatch} jobs, ${perBatch} per transaction (µs):`);
console.log('| operation | with search index | without | search index share |');
console.log('| --- | --- | --- | --- |');
for (const [name, a, b] of rows) console.log(`| ${name} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(((a - b) / a) * 100).toFixed(0)}% |`);
console.log(
  `ceiling for one writer at 100% of a core: ${Math.round(1e6 / withIndex.insertUs)} inserts/s, ` +
    `${Math.round(1e6 / withIndex.transitionUs)} transitions/s, ${Math.round(1e6 / perJob(withIndex))} jobs/s through every stage`,
);
