import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { JobStateSchema, StageSchema } from './states.js';
import { LogLevelSchema } from './jobs.js';

/**
 * Redis Pub/Sub channels. Every message is JSON `{ jobId, type, timestamp, payload }` (the seed's format).
 * Pub/Sub is at most once: nothing decides state on these alone.
 */
export const EVENT_CHANNELS = {
  progress: 'events:progress',
  state: 'events:state',
  log: 'events:log',
  error: 'events:error',
  /** Ours, beside the seed's four: system notifications (disk holds and the like). */
  notification: 'events:notification',
} as const;
export type EventChannel = (typeof EVENT_CHANNELS)[keyof typeof EVENT_CHANNELS];
export const ALL_EVENT_CHANNELS: readonly EventChannel[] = Object.values(EVENT_CHANNELS);

/** Cancel signal for workers: JSON `CancelSignal` published here. */
export const CONTROL_CANCEL_CHANNEL = 'control:cancel';

/** Largest message any publisher may send; the relay drops larger ones. */
export const MAX_EVENT_MESSAGE_BYTES = 64 * 1024;

const JobId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });
const Timestamp = Type.String({ format: 'date-time', description: 'ISO 8601 UTC' });

function envelope<T extends string, P extends TSchema>(type: T, payload: P, description: string) {
  return Type.Object(
    { jobId: JobId, type: Type.Literal(type), timestamp: Timestamp, payload },
    { additionalProperties: false, description },
  );
}

export const ProgressPayloadSchema = Type.Object(
  {
    stage: StageSchema,
    percent: Type.Number({ minimum: 0, maximum: 100 }),
    speed: Type.Optional(Type.Union([Type.Number({ minimum: 0 }), Type.Null()], { description: 'bytes per second' })),
    eta: Type.Optional(Type.Union([Type.Number({ minimum: 0 }), Type.Null()], { description: 'seconds left' })),
    step: Type.Optional(Type.String({ maxLength: 200, description: 'what the stage is doing, e.g. "cue 3/40"' })),
    /** Per-job sequence number from the worker; lets clients spot gaps and order updates. */
    seq: Type.Optional(Type.Integer({ minimum: 0 })),
    final: Type.Optional(Type.Boolean({ description: 'true on the last update of a stage' })),
  },
  { additionalProperties: false },
);
export const ProgressMessageSchema = envelope(
  'progress',
  ProgressPayloadSchema,
  'Published by workers on events:progress',
);
export type ProgressMessage = Static<typeof ProgressMessageSchema>;

export const StateChangeMessageSchema = envelope(
  'state_change',
  Type.Object(
    {
      from: Type.Union([JobStateSchema, Type.Null()]),
      to: JobStateSchema,
      ownerId: Type.String(),
      /** Id of the `job_events` row that recorded the change. */
      eventId: Type.Integer({ minimum: 1 }),
      reason: Type.Optional(Type.String({ maxLength: 2000 })),
    },
    { additionalProperties: false },
  ),
  'Published on events:state after every committed transition',
);
export type StateChangeMessage = Static<typeof StateChangeMessageSchema>;

export const JobAddedMessageSchema = envelope(
  'job_added',
  Type.Object(
    { url: Type.String(), status: JobStateSchema, ownerId: Type.String(), eventId: Type.Integer({ minimum: 1 }) },
    { additionalProperties: false },
  ),
  'Published on events:state when the API accepts a job',
);
export type JobAddedMessage = Static<typeof JobAddedMessageSchema>;

export const JobRemovedMessageSchema = envelope(
  'job_removed',
  Type.Object({ ownerId: Type.String() }, { additionalProperties: false }),
  'Published on events:state when a job is deleted',
);
export type JobRemovedMessage = Static<typeof JobRemovedMessageSchema>;

export const StateChannelMessageSchema = Type.Union(
  [StateChangeMessageSchema, JobAddedMessageSchema, JobRemovedMessageSchema]
);
export type StateChannelMessage = Static<typeof StateChannelMessageSchema>;

export const LogMessageSchema = envelope(
  'log',
  Type.Object(
    {
      level: LogLevelSchema,
      message: Type.String({ maxLength: 4000 }),
      stage: Type.Optional(StageSchema),
    },
    { additionalProperties: false },
  ),
  'Published by workers on events:log',
);
export type LogMessage = Static<typeof LogMessageSchema>;

export const ErrorMessageSchema = envelope(
  'error',
  Type.Object(
    {
      code: Type.String({ maxLength: 64 }),
      message: Type.String({ maxLength: 4000 }),
      stage: Type.Optional(StageSchema),
      permanent: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
  'Published by workers on events:error (informational; the stage outcome itself goes through BullMQ)',
);
export type ErrorMessage = Static<typeof ErrorMessageSchema>;

export const NOTIFICATION_SEVERITIES = ['info', 'warning', 'error'] as const;
export const NotificationSeveritySchema = Type.Union(NOTIFICATION_SEVERITIES.map((s) => Type.Literal(s)));

export const NotificationMessageSchema = Type.Object(
  {
    /** The job it concerns, when one does; else "system". */
    jobId: Type.Union([JobId, Type.Literal('system')]),
    type: Type.Literal('notification'),
    timestamp: Timestamp,
    payload: Type.Object(
      {
        type: Type.String({ maxLength: 64, description: 'e.g. "disk_space_low", "queue_depth_high"' }),
        title: Type.String({ maxLength: 200 }),
        message: Type.String({ maxLength: 2000 }),
        severity: NotificationSeveritySchema,
        /** Who may see it: these users, or (when absent) admins only. */
        userIds: Type.Optional(Type.Array(Type.String(), { maxItems: 1000 })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type NotificationMessage = Static<typeof NotificationMessageSchema>;

/** The schema each channel's messages must match. */
export const CHANNEL_SCHEMAS = {
  [EVENT_CHANNELS.progress]: ProgressMessageSchema,
  [EVENT_CHANNELS.state]: StateChannelMessageSchema,
  [EVENT_CHANNELS.log]: LogMessageSchema,
  [EVENT_CHANNELS.error]: ErrorMessageSchema,
  [EVENT_CHANNELS.notification]: NotificationMessageSchema,
} as const satisfies Record<EventChannel, TSchema>;

export interface ChannelMessages {
  'events:progress': ProgressMessage;
  'events:state': StateChannelMessage;
  'events:log': LogMessage;
  'events:error': ErrorMessage;
  'events:notification': NotificationMessage;
}

/** Sent on `control:cancel` to stop a running stage. Workers abort within 5 s. */
export const CancelSignalSchema = Type.Object(
  {
    jobId: JobId,
    /** The BullMQ job id of the stage run to stop, when known; else every stage of the job. */
    stageJobId: Type.Optional(Type.String({ maxLength: 200 })),
    reason: Type.String({ maxLength: 500 }),
    timestamp: Timestamp,
  },
  { additionalProperties: false },
);
export type CancelSignal = Static<typeof CancelSignalSchema>;
