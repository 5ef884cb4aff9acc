import type { TSchema } from '@sinclair/typebox';
import { JobStateSchema, StageSchema, TRANSITIONS } from './states.js';
import { CreateJobBodySchema, JobSchema, MediaSchema, JobEventRecordSchema, JobDetailSchema } from './jobs.js';
import {
  ProgressMessageSchema,
  StateChangeMessageSchema,
  JobAddedMessageSchema,
  JobRemovedMessageSchema,
  LogMessageSchema,
  ErrorMessageSchema,
  NotificationMessageSchema,
  CancelSignalSchema,
} from './events.js';
import {
  DownloadPayloadSchema,
  DownloadResultSchema,
  DubPayloadSchema,
  DubResultSchema,
  DubCheckpointSchema,
  MuxPayloadSchema,
  MuxResultSchema,
} from './stages.js';
import {
  WsProgressSchema,
  WsStateChangeSchema,
  WsLogSchema,
  WsNotificationSchema,
  WsJobAddedSchema,
  WsJobRemovedSchema,
  WsErrorSchema,
  SubscribeArgsSchema,
  SubscriptionAckSchema,
  AuthenticateAckSchema,
} from './ws.js';
import { ListJobsQuerySchema, JobListResponseSchema, LogsQuerySchema, LogsResponseSchema, ErrorResponseSchema, LoginBodySchema, LoginResponseSchema } from './api.js';
import { ERROR_CODES } from './errors.js';

const DRAFT = 'http://json-schema.org/draft-07/schema#';

/**
 * Makes a standalone JSON Schema: TypeBox's own markers are stripped (they are symbols,
 * so JSON.stringify drops them) and `$id` becomes the file name.
 */
function standalone(file: string, schema: TSchema | object, title?: string): object {
  const plain = JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
  return { $schema: DRAFT, ...plain, $id: file, ...(title ? { title } : {}) };
}

/** File name → schema. The catalog a non-Node worker author reads. */
export function schemaFiles(): Record<string, object> {
  const entries: Array<[string, TSchema | object, string?]> = [
    // Worker contract
    ['download-payload.schema.json', DownloadPayloadSchema, 'Payload of a q:download job'],
    ['download-result.schema.json', DownloadResultSchema, 'Return value of a q:download job'],
    ['dub-payload.schema.json', DubPayloadSchema, 'Payload of a q:dub job'],
    ['dub-result.schema.json', DubResultSchema, 'Return value of a q:dub job'],
    ['dub-checkpoint.schema.json', DubCheckpointSchema, 'Checkpoint a dub worker reports'],
    ['mux-payload.schema.json', MuxPayloadSchema, 'Payload of a q:mux job'],
    ['mux-result.schema.json', MuxResultSchema, 'Return value of a q:mux job'],
    ['cancel-signal.schema.json', CancelSignalSchema, 'Message on control:cancel'],
    // Pub/Sub
    ['events-progress.schema.json', ProgressMessageSchema, 'Message on events:progress'],
    ['events-state-change.schema.json', StateChangeMessageSchema, 'state_change message on events:state'],
    ['events-job-added.schema.json', JobAddedMessageSchema, 'job_added message on events:state'],
    ['events-job-removed.schema.json', JobRemovedMessageSchema, 'job_removed message on events:state'],
    ['events-log.schema.json', LogMessageSchema, 'Message on events:log'],
    ['events-error.schema.json', ErrorMessageSchema, 'Message on events:error'],
    ['events-notification.schema.json', NotificationMessageSchema, 'Message on events:notification'],
    // WebSocket
    ['ws-progress.schema.json', WsProgressSchema],
    ['ws-state-change.schema.json', WsStateChangeSchema],
    ['ws-log.schema.json', WsLogSchema],
    ['ws-notification.schema.json', WsNotificationSchema],
    ['ws-job-added.schema.json', WsJobAddedSchema],
    ['ws-job-removed.schema.json', WsJobRemovedSchema],
    ['ws-error.schema.json', WsErrorSchema],
    ['ws-subscribe-args.schema.json', SubscribeArgsSchema],
    ['ws-subscription-ack.schema.json', SubscriptionAckSchema],
    ['ws-authenticate-ack.schema.json', AuthenticateAckSchema],
    // REST
    ['create-job-body.schema.json', CreateJobBodySchema],
    ['job.schema.json', JobSchema],
    ['media.schema.json', MediaSchema],
    ['job-event.schema.json', JobEventRecordSchema],
    ['job-detail.schema.json', JobDetailSchema],
    ['list-jobs-query.schema.json', ListJobsQuerySchema],
    ['job-list-response.schema.json', JobListResponseSchema],
    ['logs-query.schema.json', LogsQuerySchema],
    ['logs-response.schema.json', LogsResponseSchema],
    ['login-body.schema.json', LoginBodySchema],
    ['login-response.schema.json', LoginResponseSchema],
    ['error-response.schema.json', ErrorResponseSchema],
    // Vocabulary
    ['job-state.schema.json', JobStateSchema],
    ['stage.schema.json', StageSchema],
    ['error-code.schema.json', { type: 'string', enum: Object.keys(ERROR_CODES) }, 'Stable error codes'],
    [
      'transitions.schema.json',
      { type: 'object', const: TRANSITIONS, description: 'The job transition table: from → allowed targets' },
      'Job transition table',
    ],
  ];
  return Object.fromEntries(entries.map(([file, schema, title]) => [file, standalone(file, schema, title)]));
}
