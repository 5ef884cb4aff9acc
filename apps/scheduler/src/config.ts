import { BASE_FIELDS, FIELDS, integerField, portField, loadConfig, type ConfigOf, type LoadConfigOptions } from '@dubgate/runtime/config';

export const SCHEDULER_FIELDS = {
  SCHEDULER_PORT: portField('SCHEDULER_PORT', { doc: 'port of the scheduler health and metrics endpoint', default: 9102 }),
  MAX_DOWNLOAD_QUEUE_DEPTH: integerField('MAX_DOWNLOAD_QUEUE_DEPTH', {
    doc: 'past this many queued downloads, new downloads wait in the outbox',
    default: 1000,
    min: 1,
    max: 10_000_000,
  }),
  RECONCILE_INTERVAL_MS: integerField('RECONCILE_INTERVAL_MS', { doc: 'how often the reconciler repairs drift', default: 30_000, min: 100, max: 3_600_000 }),
  SCHEDULER_LOCK_TTL_MS: integerField('SCHEDULER_LOCK_TTL_MS', { doc: 'leader lock lifetime; a standby takes over within it', default: 5000, min: 500, max: 600_000 }),
} as const;

export const SCHEDULER_CONFIG_FIELDS = [
  ...BASE_FIELDS,
  FIELDS.DB_PATH,
  FIELDS.REDIS_URL,
  FIELDS.MEDIA_ROOT,
  FIELDS.HOST,
  FIELDS.MIN_FREE_DISK_BYTES,
  FIELDS.MAX_RETRIES,
  FIELDS.MAX_RETRIES_DOWNLOAD,
  FIELDS.MAX_RETRIES_DUB,
  FIELDS.MAX_RETRIES_MUX,
  FIELDS.STAGE_BACKOFF_MS,
  ...Object.values(SCHEDULER_FIELDS),
] as const;

export type SchedulerConfig = ConfigOf<typeof SCHEDULER_CONFIG_FIELDS>;

export function loadSchedulerConfig(options?: LoadConfigOptions): SchedulerConfig {
  return loadConfig(SCHEDULER_CONFIG_FIELDS, options);
}
