import { Type, type Static } from '@sinclair/typebox';
import { JobStateSchema, StageSchema } from './states.js';
import { LogLevelSchema } from './jobs.js';
import { NotificationSeveritySchema } from './events.js';

/**
 * Socket.IO events, exactly as the seed names them. Path `/socket.io/`.
 * Events that are also stored in `job_events` carry its `eventId`, so a client that was
 * away fetches what it missed from `GET /api/jobs/:id/logs?after=<eventId>`.
 */
export const MAX_SUBSCRIBE_IDS = 100;

const JobId = Type.String({ minLength: 1, maxLength: 64 });
const Timestamp = Type.String({ format: 'date-time' });
const EventId = Type.Optional(Type.Integer({ minimum: 1, description: 'job_events row id, when stored' }));

// Client → server
export const SubscribeArgsSchema = Type.Array(JobId, { minItems: 1, maxItems: MAX_SUBSCRIBE_IDS });
export type SubscribeArgs = Static<typeof SubscribeArgsSchema>;
export const AuthenticateArgsSchema = Type.String({ minLength: 1, maxLength: 4096 });

/** Acknowledgement of subscribe/unsubscribe: per id, whether it was accepted and why not. */
export const SubscriptionAckSchema = Type.Object(
  {
    ok: Type.Boolean(),
    results: Type.Array(
      Type.Object(
        {
          jobId: Type.String(),
          accepted: Type.Boolean(),
          code: Type.Optional(Type.String()),
        },
        { additionalProperties: false },
      ),
    ),
    error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type SubscriptionAck = Static<typeof SubscriptionAckSchema>;

export const AuthenticateAckSchema = Type.Object(
  {
    ok: Type.Boolean(),
    userId: Type.Optional(Type.String()),
    error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type AuthenticateAck = Static<typeof AuthenticateAckSchema>;

// Server → client
export const WsProgressSchema = Type.Object(
  {
    jobId: JobId,
    /** The pipeline stage: download, dub or mux. */
    type: StageSchema,
    percent: Type.Number({ minimum: 0, maximum: 100 }),
    speed: Type.Union([Type.Number(), Type.Null()]),
    eta: Type.Union([Type.Number(), Type.Null()]),
    /** What the stage is doing, as the worker says it (e.g. "cue 3/40"), or null. */
    stage: Type.Union([Type.String(), Type.Null()]),
    seq: Type.Optional(Type.Integer({ minimum: 0 })),
    timestamp: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type WsProgress = Static<typeof WsProgressSchema>;

export const WsStateChangeSchema = Type.Object(
  {
    jobId: JobId,
    from: Type.Union([JobStateSchema, Type.Null()]),
    to: JobStateSchema,
    timestamp: Timestamp,
    eventId: EventId,
    reason: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type WsStateChange = Static<typeof WsStateChangeSchema>;

export const WsLogSchema = Type.Object(
  { jobId: JobId, level: LogLevelSchema, message: Type.String(), timestamp: Timestamp, eventId: EventId },
  { additionalProperties: false },
);
export type WsLog = Static<typeof WsLogSchema>;

export const WsNotificationSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    message: Type.String(),
    severity: NotificationSeveritySchema,
    jobId: Type.Optional(JobId),
    timestamp: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type WsNotification = Static<typeof WsNotificationSchema>;

export const WsJobAddedSchema = Type.Object(
  { jobId: JobId, url: Type.String(), status: JobStateSchema, eventId: EventId },
  { additionalProperties: false },
);
export type WsJobAdded = Static<typeof WsJobAddedSchema>;

export const WsJobRemovedSchema = Type.Object({ jobId: JobId }, { additionalProperties: false });
export type WsJobRemoved = Static<typeof WsJobRemovedSchema>;

export const WsErrorSchema = Type.Object(
  {
    jobId: Type.Optional(JobId),
    code: Type.String(),
    message: Type.String(),
    eventId: EventId,
    timestamp: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type WsError = Static<typeof WsErrorSchema>;

/** Socket.IO typed maps, for `new Server<ClientToServerEvents, ServerToClientEvents>()`. */
export interface ServerToClientEvents {
  progress: (e: WsProgress) => void;
  state_change: (e: WsStateChange) => void;
  log: (e: WsLog) => void;
  notification: (e: WsNotification) => void;
  job_added: (e: WsJobAdded) => void;
  job_removed: (e: WsJobRemoved) => void;
  error: (e: WsError) => void;
}

export interface ClientToServerEvents {
  subscribe: (jobIds: string[], ack?: (a: SubscriptionAck) => void) => void;
  unsubscribe: (jobIds: string[], ack?: (a: SubscriptionAck) => void) => void;
  authenticate: (token: string, ack?: (a: AuthenticateAck) => void) => void;
}

export const SERVER_EVENT_NAMES = ['progress', 'state_change', 'log', 'notification', 'job_added', 'job_removed', 'error'] as const;
export const CLIENT_EVENT_NAMES = ['subscribe', 'unsubscribe', 'authenticate'] as const;

/** Socket.IO room names. */
export const rooms = {
  job: (jobId: string) => `job:${jobId}`,
  user: (userId: string) => `user:${userId}`,
  admins: 'admins',
} as const;
