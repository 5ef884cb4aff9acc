// What one job's whole life costs SQLite, on a fresh database with the real schema and
// repositories, written as the api and the scheduler write it: the insert (job row + first event
// + two outbox rows), deleting delivered outbox rows, each of the six transitions (row update +
// event + outbox rows, the next stage's enqueue with it) and the three media rows, 64 per
// transaction as the group commits batch them. Then the same with the search-index triggers
// dropped, to show what the trigram index costs on this write path.
//
//   node bench/sqlite-costs.mjs [--jobs 6400] [--repeats 3]
// Needs the built db package (turbo run build). Prints the median of the repeats.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const root = new URL('..', import.meta.url).pathname;
const { openDatabase, closeDatabase } = await import(join(root, 'packages/db/dist/open.js'));
const { createJobsRepository } = await import(join(root, 'packages/db/dist/jobs-repository.js'));
const { createOutboxRepository } = await import(join(root, 'packages/db/dist/outbox-repository.js'));
const { createAuthRepository } = await import(join(root, 'packages/db/dist/auth-repository.js'));

const { values: args } = parseArgs({ options: { jobs: { type: 'string', default: '6400' }, repeats: { type: 'string', default: '3' } } });
const PER = 64;
const N = Math.max(PER, Math.round(Number(args.jobs) / PER) * PER);
// from, to, the media row written with the transition
const STEPS = [
  ['QUEUED', 'DOWNLOADING', null],
  ['DOWNLOADING', 'DOWNLOADED', 'source'],
  ['DOWNLOADED', 'DUBBING', null],
  ['DUBBING', 'DUBBED', 'dubbed_audio'],
  ['DUBBED', 'MUXING', null],
  ['MUXING', 'COMPLETE', 'output'],
];

function measure(withSearchIndex) {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-sqlite-costs-'));
  const db = openDatabase(join(dir, 'gateway.db'));
  try {
    if (!withSearchIndex) db.exec('DROP TRIGGER jobs_fts_insert; DROP TRIGGER jobs_fts_update;');
    const owner = createAuthRepository(db).createUser({ username: 'bench', passwordHash: 'x', role: 'user' }).user;
    const jobs = createJobsRepository(db);
    const outbox = createOutboxRepository(db);
    const us = { insert: 0, 'deliver (delete outbox rows)': 0, transition: 0, 'media row': 0 };
    const batched = (name, items, fn) => {
      const t = performance.now();
      for (let i = 0; i < items.length; i += PER) db.transaction(() => items.slice(i, i + PER).forEach(fn)).immediate();
      us[name] += (performance.now() - t) * 1000;
    };
    let delivered = [];
    const deliver = () => {
      const ids = delivered;
      delivered = [];
      batched('deliver (delete outbox rows)', Array.from({ length: Math.ceil(ids.length / PER) }, (_, i) => ids.slice(i * PER, (i + 1) * PER)), (chunk) => outbox.removeDelivered(chunk));
    };
    const ids = [];
    batched('insert', Array.from({ length: N }, (_, i) => i), (i) => {
      const r = jobs.insertJob({ ownerId: owner.id, url: `https://videos.example.com/watch?v=bench-${i}-${(i * 2654435761) % 1e9}`, requestedDubbing: true, targetLang: 'es', formatPreset: '720p', outputContainer: 'mp4' });
      ids.push(r.job.id);
      delivered.push(...r.outboxIds);
    });
    deliver();
    for (const [from, to, media] of STEPS) {
      if (media) batched('media row', ids, (id) => jobs.upsertMedia(id, media, { path: `${id}/${media}`, sizeBytes: 1024 }));
      const next = media && to !== 'COMPLETE' ? (id) => [{ kind: 'enqueue', jobId: id, payload: { stage: 'mux', queueJobId: `${id}_mux_g0`, payload: { jobId: id, generation: 0, workDir: id, mediaPath: `${id}/source`, outputContainer: 'mp4' } } }] : () => [];
      batched('transition', ids, (id) => delivered.push(...jobs.updateJobState(id, { from, to, reason: 'bench', outbox: next(id) }).outboxIds));
      deliver();
    }
    return Object.fromEntries(Object.entries(us).map(([k, v]) => [k, v / N]));
  } finally {
    closeDatabase(db);
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const runs = { with: [], without: [] };
for (let r = 0; r < Number(args.repeats); r++) {
  runs.with.push(measure(true));
  runs.without.push(measure(false));
}
const med = (side, k) => median(runs[side].map((m) => m[k]));
const names = Object.keys(runs.with[0]);
const total = (side) => names.reduce((a, k) => a + med(side, k), 0);
console.log(`SQLite CPU per job, ${N} jobs, ${PER} per transaction, median of ${args.repeats} (µs per job; "transition" is all six):`);
console.log('| part of a job\'s life | with search index | without | search index share |');
console.log('| --- | --- | --- | --- |');
for (const k of names) {
  const a = med('with', k);
  const b = med('without', k);
  console.log(`| ${k} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${a > 0 ? (((a - b) / a) * 100).toFixed(0) : 0}% |`);
}
console.log(`| whole life | ${total('with').toFixed(0)} | ${total('without').toFixed(0)} | ${(((total('with') - total('without')) / total('with')) * 100).toFixed(0)}% |`);
console.log(`ceiling for one writer at 100% of a core: ${Math.round(1e6 / total('with'))} jobs/s through every stage`);
