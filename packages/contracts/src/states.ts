import { Type, type Static } from '@sinclair/typebox';

/** The seed's job states. SQLite holds the current one; every change goes through the table below. */
export const JOB_STATES = [
  'QUEUED',
  'DOWNLOADING',
  'DOWNLOADED',
  'DUBBING',
  'DUBBED',
  'MUXING',
  'COMPLETE',
  'FAILED',
  'CANCELED',
] as const;
export type JobState = (typeof JOB_STATES)[number];
export const JobStateSchema = Type.Union(
  JOB_STATES.map((s) => Type.Literal(s)),
  { description: 'State of a job in the pipeline' },
);

/** The three worker stages, in pipeline order. BullMQ queue names are the same strings. */
export const STAGES = ['download', 'dub', 'mux'] as const;
export type Stage = (typeof STAGES)[number];
export const StageSchema = Type.Union(
  STAGES.map((s) => Type.Literal(s)),
  { description: 'Pipeline stage; also the BullMQ queue name (prefix "q")' },
);

export const TERMINAL_STATES: readonly JobState[] = ['COMPLETE', 'FAILED', 'CANCELED'];
/** States in which some stage is queued or running. */
export const ACTIVE_STATES: readonly JobState[] = ['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'DUBBING', 'DUBBED', 'MUXING'];

/**
 * The transition table. Pipeline moves follow the seed:
 * QUEUED → DOWNLOADING → DOWNLOADED → [DUBBING → DUBBED] → MUXING → COMPLETE.
 * Any active state may fail or be canceled. FAILED and CANCELED leave only through
 * an explicit retry (back to QUEUED) or, for a failed dub, resume (back to DUBBING).
 * COMPLETE is final.
 */
export const TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  QUEUED: ['DOWNLOADING', 'FAILED', 'CANCELED'],
  DOWNLOADING: ['DOWNLOADED', 'FAILED', 'CANCELED'],
  DOWNLOADED: ['DUBBING', 'MUXING', 'FAILED', 'CANCELED'],
  DUBBING: ['DUBBED', 'FAILED', 'CANCELED'],
  DUBBED: ['MUXING', 'FAILED', 'CANCELED'],
  MUXING: ['COMPLETE', 'FAILED', 'CANCELED'],
  COMPLETE: [],
  FAILED: ['QUEUED', 'DUBBING'],
  CANCELED: ['QUEUED'],
};

export function isJobState(value: unknown): value is JobState {
  return typeof value === 'string' && (JOB_STATES as readonly string[]).includes(value);
}

export function isTransitionAllowed(from: JobState, to: JobState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.includes(state);
}

export function isActive(state: JobState): boolean {
  return ACTIVE_STATES.includes(state);
}

/** What the state machine needs to know about a job. */
export interface JobShape {
  state: JobState;
  requestedDubbing: boolean;
  /** Stage that was running when the job failed; set only in FAILED. */
  failedStage?: Stage | null;
}

/** The state a job is in while a stage runs, and the one it reaches when the stage succeeds. */
export const STAGE_STATES: Readonly<Record<Stage, { running: JobState; done: JobState }>> = {
  download: { running: 'DOWNLOADING', done: 'DOWNLOADED' },
  dub: { running: 'DUBBING', done: 'DUBBED' },
  mux: { running: 'MUXING', done: 'COMPLETE' },
};

/**
 * The stage that should be queued (or running) for a job in this state, or null when none.
 * QUEUED waits for download; DOWNLOADED goes to dub or mux; DUBBED goes to mux.
 */
export function nextStage(job: JobShape): Stage | null {
  switch (job.state) {
    case 'QUEUED':
    case 'DOWNLOADING':
      return 'download';
    case 'DOWNLOADED':
      return job.requestedDubbing ? 'dub' : 'mux';
    case 'DUBBING':
      return 'dub';
    case 'DUBBED':
    case 'MUXING':
      return 'mux';
    default:
      return null;
  }
}

/** The stage whose worker is (or would be) busy with the job in this state. */
export function stageOfState(state: JobState): Stage | null {
  switch (state) {
    case 'QUEUED':
    case 'DOWNLOADING':
      return 'download';
    case 'DOWNLOADED':
    case 'DUBBING':
      return 'dub';
    case 'DUBBED':
    case 'MUXING':
      return 'mux';
    default:
      return null;
  }
}

/** Everything that can happen to a job: worker outcomes and user control. */
export type JobEvent =
  | { kind: 'stage_started'; stage: Stage }
  | { kind: 'stage_completed'; stage: Stage }
  | { kind: 'stage_failed'; stage: Stage }
  | { kind: 'cancel' }
  | { kind: 'retry' }
  | { kind: 'resume' };

export type ControlOperation = 'cancel' | 'retry' | 'resume';

/** Why a control operation does not apply, or null when it does. */
export function controlRefusal(op: ControlOperation, job: JobShape): string | null {
  switch (op) {
    case 'cancel':
      return isActive(job.state) ? null : `a ${job.state} job cannot be canceled`;
    case 'retry':
      return job.state === 'FAILED' || job.state === 'CANCELED'
        ? null
        : `only FAILED or CANCELED jobs can be retried; this one is ${job.state}`;
    case 'resume':
      if (job.state !== 'FAILED') return `only FAILED jobs can be resumed; this one is ${job.state}`;
      if (job.failedStage !== 'dub' || !job.requestedDubbing) return 'only a job that failed while dubbing can be resumed';
      return null;
  }
}

/**
 * The state a job moves to when `event` happens, or null when the event changes nothing
 * (duplicate, late or stale outcomes, and control that does not apply).
 * This is the state machine; the transition table above is its check.
 */
export function transitionFor(job: JobShape, event: JobEvent): JobState | null {
  const target = proposedTarget(job, event);
  if (target === null || target === job.state) return null;
  return isTransitionAllowed(job.state, target) ? target : null;
}

function proposedTarget(job: JobShape, event: JobEvent): JobState | null {
  switch (event.kind) {
    case 'stage_started': {
      // A worker taking the stage that is due; anything else is stale.
      if (nextStage(job) !== event.stage) return null;
      return STAGE_STATES[event.stage].running;
    }
    case 'stage_completed': {
      // Only from the running state: a missed start is applied first by the scheduler.
      if (job.state !== STAGE_STATES[event.stage].running) return null;
      return STAGE_STATES[event.stage].done;
    }
    case 'stage_failed':
      return nextStage(job) === event.stage && !isTerminal(job.state) ? 'FAILED' : null;
    case 'cancel':
      return controlRefusal('cancel', job) === null ? 'CANCELED' : null;
    case 'retry':
      return controlRefusal('retry', job) === null ? 'QUEUED' : null;
    case 'resume':
      return controlRefusal('resume', job) === null ? 'DUBBING' : null;
  }
}

export const TransitionTableSchema = Type.Record(JobStateSchema, Type.Array(JobStateSchema), {
  
});
export type TransitionTable = Static<typeof TransitionTableSchema>;
