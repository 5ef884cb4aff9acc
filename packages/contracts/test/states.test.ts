import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  JOB_STATES,
  STAGES,
  TRANSITIONS,
  isTransitionAllowed,
  isTerminal,
  nextStage,
  transitionFor,
  controlRefusal,
  type JobEvent,
  type JobShape,
  type JobState,
} from '../src/states.js';

const stageArb = fc.constantFrom(...STAGES);
const eventArb: fc.Arbitrary<JobEvent> = fc.oneof(
  stageArb.map((stage) => ({ kind: 'stage_started', stage }) as const),
  stageArb.map((stage) => ({ kind: 'stage_completed', stage }) as const),
  stageArb.map((stage) => ({ kind: 'stage_failed', stage }) as const),
  fc.constant({ kind: 'cancel' } as const),
  fc.constant({ kind: 'retry' } as const),
  fc.constant({ kind: 'resume' } as const),
);
const workerEventArb = eventArb.filter((e) => e.kind.startsWith('stage_'));

/** Applies events the way the scheduler does; returns every state visited. */
function run(start: JobShape, events: JobEvent[]): JobShape[] {
  const visited = [start];
  let job = start;
  for (const event of events) {
    const to = transitionFor(job, event);
    if (to === null) continue;
    job = {
      ...job,
      state: to,
      failedStage: to === 'FAILED' ? nextStage(job) : null,
    };
    visited.push(job);
  }
  return visited;
}

describe('transition table', () => {
  it('names every state and only known states', () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...JOB_STATES].sort());
    for (const targets of Object.values(TRANSITIONS)) {
      for (const t of targets) expect(JOB_STATES).toContain(t);
    }
  });

  it('follows the seed pipeline with and without dubbing', () => {
    const withDub = run({ state: 'QUEUED', requestedDubbing: true }, [
      { kind: 'stage_started', stage: 'download' },
      { kind: 'stage_completed', stage: 'download' },
      { kind: 'stage_started', stage: 'dub' },
      { kind: 'stage_completed', stage: 'dub' },
      { kind: 'stage_started', stage: 'mux' },
      { kind: 'stage_completed', stage: 'mux' },
    ]).map((j) => j.state);
    expect(withDub).toEqual(['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'DUBBING', 'DUBBED', 'MUXING', 'COMPLETE']);

    const noDub = run({ state: 'QUEUED', requestedDubbing: false }, [
      { kind: 'stage_started', stage: 'download' },
      { kind: 'stage_completed', stage: 'download' },
      { kind: 'stage_started', stage: 'dub' },
      { kind: 'stage_started', stage: 'mux' },
      { kind: 'stage_completed', stage: 'mux' },
    ]).map((j) => j.state);
    expect(noDub).toEqual(['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'MUXING', 'COMPLETE']);
  });

  it('ignores duplicate and out-of-order outcomes', () => {
    const job: JobShape = { state: 'DUBBING', requestedDubbing: true };
    expect(transitionFor(job, { kind: 'stage_completed', stage: 'download' })).toBeNull();
    expect(transitionFor(job, { kind: 'stage_started', stage: 'dub' })).toBeNull();
    expect(transitionFor(job, { kind: 'stage_completed', stage: 'mux' })).toBeNull();
    expect(transitionFor({ state: 'CANCELED', requestedDubbing: true }, { kind: 'stage_completed', stage: 'dub' })).toBeNull();
  });

  it('resumes only a job that failed while dubbing', () => {
    expect(controlRefusal('resume', { state: 'FAILED', requestedDubbing: true, failedStage: 'dub' })).toBeNull();
    expect(controlRefusal('resume', { state: 'FAILED', requestedDubbing: true, failedStage: 'download' })).not.toBeNull();
    expect(controlRefusal('resume', { state: 'CANCELED', requestedDubbing: true, failedStage: 'dub' })).not.toBeNull();
    expect(transitionFor({ state: 'FAILED', requestedDubbing: true, failedStage: 'dub' }, { kind: 'resume' })).toBe('DUBBING');
  });
});

describe('state machine properties', () => {
  const startArb = fc.record({ requestedDubbing: fc.boolean() }).map((r): JobShape => ({ state: 'QUEUED', ...r }));

  it('random event sequences only take transitions the table allows', () => {
    fc.assert(
      fc.property(startArb, fc.array(eventArb, { maxLength: 60 }), (start, events) => {
        const visited = run(start, events);
        for (let i = 1; i < visited.length; i++) {
          expect(isTransitionAllowed(visited[i - 1]!.state, visited[i]!.state)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('a job without dubbing never enters DUBBING or DUBBED', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 60 }), (events) => {
        const states = run({ state: 'QUEUED', requestedDubbing: false }, events).map((j) => j.state);
        expect(states).not.toContain('DUBBING');
        expect(states).not.toContain('DUBBED');
      }),
      { numRuns: 1000 },
    );
  });

  it('terminal states stay terminal under any worker outcome', () => {
    const terminalArb = fc.record({
      state: fc.constantFrom<JobState>('COMPLETE', 'FAILED', 'CANCELED'),
      requestedDubbing: fc.boolean(),
      failedStage: fc.constantFrom(null, ...STAGES),
    });
    fc.assert(
      fc.property(terminalArb, fc.array(workerEventArb, { maxLength: 40 }), (start, events) => {
        const visited = run(start, events);
        expect(visited).toHaveLength(1);
        expect(isTerminal(visited[0]!.state)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('COMPLETE is final whatever happens', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(eventArb, { maxLength: 40 }), (requestedDubbing, events) => {
        expect(run({ state: 'COMPLETE', requestedDubbing }, events)).toHaveLength(1);
      }),
    );
  });

  it('every event either leaves the state alone or takes an allowed transition', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...JOB_STATES),
        fc.boolean(),
        fc.constantFrom(null, ...STAGES),
        eventArb,
        (state, requestedDubbing, failedStage, event) => {
          const to = transitionFor({ state, requestedDubbing, failedStage }, event);
          if (to !== null) expect(TRANSITIONS[state]).toContain(to);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
