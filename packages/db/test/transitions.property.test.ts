import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  isTransitionAllowed,
  JOB_STATES,
  STAGES,
  stageOfState,
  transitionFor,
  type JobEvent,
  type JobShape,
  type JobState,
  type Stage,
} from '@dubgate/contracts/states';
import { createJobsRepository } from '../src/jobs-repository.js';
import { counts, jobInput, seedUsers, testDb } from './helpers.js';

type Command = { kind: 'event'; event: JobEvent } | { kind: 'raw'; from: JobState; to: JobState };

const stage = fc.constantFrom<Stage>(...STAGES);
const state = fc.constantFrom<JobState>(...JOB_STATES);
const event: fc.Arbitrary<JobEvent> = fc.oneof(
  stage.map((s) => ({ kind: 'stage_started' as const, stage: s })),
  stage.map((s) => ({ kind: 'stage_completed' as const, stage: s })),
  stage.map((s) => ({ kind: 'stage_failed' as const, stage: s })),
  fc.constantFrom<JobEvent>({ kind: 'cancel' }, { kind: 'retry' }, { kind: 'resume' }),
);
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: event.map((e) => ({ kind: 'event' as const, event: e })) },
  // Anything at all, including forbidden and stale changes.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), from: state, to: state }) },
);

describe('updateJobState against the state machine', () => {
  it('keeps the row equal to the model and never records a forbidden transition', () => {
    const { db } = testDb();
    const [owner] = seedUsers(db, 'prop');
    const jobs = createJobsRepository(db);
    const stateOf = db.prepare('SELECT state, failed_stage FROM jobs WHERE id = ?');
    const changes = db.prepare(`SELECT payload FROM job_events WHERE job_id = ? AND type = 'state_change' ORDER BY id`).pluck();

    fc.assert(
      fc.property(fc.boolean(), fc.array(command, { maxLength: 40 }), (dub, cmds) => {
        const created = jobs.insertJob(jobInput(owner!, { requestedDubbing: dub, targetLang: dub ? 'de' : null }));
        if (!created.ok) throw new Error('insert failed');
        const id = created.job.id;
        const model: JobShape = { state: 'QUEUED', requestedDubbing: dub, failedStage: null };

        for (const cmd of cmds) {
          const from = cmd.kind === 'raw' ? cmd.from : model.state;
          const to = cmd.kind === 'raw' ? cmd.to : transitionFor(model, cmd.event);
          if (to === null) continue; // the state machine says: nothing happens
          const failedStage: Stage | null =
            to === 'FAILED' ? (cmd.kind === 'event' && 'stage' in cmd.event ? cmd.event.stage : stageOfState(from)) : null;
          const before = counts(db);
          const r = jobs.updateJobState(id, { from, to, patch: { failedStage } });

          if (!isTransitionAllowed(from, to)) {
            expect(r).toEqual({ ok: false, reason: 'forbidden' });
          } else if (from !== model.state) {
            expect(r).toEqual({ ok: false, reason: 'stale', current: model.state });
          } else {
            expect(r.ok).toBe(true);
            model.state = to;
            model.failedStage = failedStage;
          }
          if (!r.ok) expect(counts(db)).toEqual(before);
          expect(stateOf.get(id)).toEqual({ state: model.state, failed_stage: model.failedStage ?? null });
        }

        // The recorded history is a walk of the transition table ending in the current state.
        let at: JobState = 'QUEUED';
        for (const text of changes.all(id) as string[]) {
          const p = JSON.parse(text) as { from: JobState; to: JobState };
          expect(p.from).toBe(at);
          expect(isTransitionAllowed(p.from, p.to)).toBe(true);
          at = p.to;
        }
        expect(at).toBe(model.state);
        expect(jobs.getJob(id)!.status).toBe(model.state);
      }),
      { numRuns: 150 },
    );
  });
});
