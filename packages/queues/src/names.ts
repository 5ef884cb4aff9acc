import { QUEUE_PREFIX, stageJobId, parseStageJobId } from '@dubgate/contracts/stages';
import { STAGES, type Stage } from '@dubgate/contracts/states';

/**
 * Every Redis name the processes share, in one place. BullMQ refuses ':' in queue names, so the
 * seed's `q:download` is queue `download` with prefix `q` (keys `q:download:*`).
 */
export { QUEUE_PREFIX, stageJobId, parseStageJobId, STAGES };
export type { Stage };

/** BullMQ queue name of each stage. */
export const STAGE_QUEUES = {
  download: 'download',
  dub: 'dub',
  mux: 'mux',
} as const satisfies Record<Stage, string>;
export type StageQueueName = (typeof STAGE_QUEUES)[Stage];

/** Start of every Redis key of a stage's queue, e.g. `q:download:`. */
export function stageQueueKeyPrefix(stage: Stage, prefix: string = QUEUE_PREFIX): string {
  return `${prefix}:${STAGE_QUEUES[stage]}:`;
}

/** Prefix of every key this system owns outside BullMQ. */
export const GATEWAY_KEY_PREFIX = 'gw';

export interface GatewayKeys {
  readonly prefix: string;
  /** Owner (user id) of a job: realtime nodes authorize subscriptions here without SQLite. */
  jobOwnerKey(jobId: string): string;
  /** Present while a session is revoked (logout), with a TTL of the token's remaining life. */
  revokedSessionKey(sessionId: string): string;
  /** Present (no TTL) while an admin has disabled the user; removed when the user is enabled again. */
  userDisabledKey(userId: string): string;
  /** Held by the one scheduler allowed to act. */
  readonly schedulerLockKey: string;
  /** Where the scheduler has read each stage's BullMQ event stream up to. */
  schedulerCursorKey(stage: Stage): string;
  /** Present (JSON reason, with a TTL) while downloads are held back by backpressure. */
  readonly downloadsHeldKey: string;
}

/** Key helpers under `prefix` (tests pass their own so runs never collide). */
export function gatewayKeys(prefix: string = GATEWAY_KEY_PREFIX): GatewayKeys {
  if (!prefix || prefix.endsWith(':')) throw new Error(`invalid key prefix "${prefix}"`);
  return {
    prefix,
    jobOwnerKey: (jobId) => `${prefix}:job-owner:${nonEmpty(jobId, 'jobId')}`,
    revokedSessionKey: (sid) => `${prefix}:session-revoked:${nonEmpty(sid, 'session id')}`,
    userDisabledKey: (userId) => `${prefix}:user-disabled:${nonEmpty(userId, 'user id')}`,
    schedulerLockKey: `${prefix}:scheduler:lock`,
    schedulerCursorKey: (stage) => `${prefix}:scheduler:cursor:${stage}`,
    downloadsHeldKey: `${prefix}:downloads-held`,
  };
}

function nonEmpty(value: string, what: string): string {
  // An empty id would silently address a key shared by every caller.
  if (typeof value !== 'string' || value.length === 0) throw new Error(`${what} must be a non-empty string`);
  return value;
}

const defaults = gatewayKeys();
export const jobOwnerKey: (jobId: string) => string = defaults.jobOwnerKey;
export const revokedSessionKey: (sessionId: string) => string = defaults.revokedSessionKey;
export const schedulerLockKey: string = defaults.schedulerLockKey;
