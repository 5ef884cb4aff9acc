// Types only: nothing here reaches the bundle.
export type { Job, JobDetail, JobEventRecord, Media, ProgressSnapshot } from '@dubgate/contracts/jobs';
export type { JobListResponse, LogsResponse } from '@dubgate/contracts/api';
export type { JobState, Stage } from '@dubgate/contracts/states';
export type {
  WsProgress,
  WsStateChange,
  WsLog,
  WsNotification,
  WsJobAdded,
  WsJobRemoved,
  WsError,
  SubscriptionAck,
  ServerToClientEvents,
  ClientToServerEvents,
} from '@dubgate/contracts/ws';
