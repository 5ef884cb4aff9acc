import {
  BASE_FIELDS,
  FIELDS,
  integerField,
  portField,
  stringField,
  loadConfig,
  type ConfigOf,
  type LoadConfigOptions,
} from '@dubgate/runtime/config';

export const RELAY_FIELDS = {
  RELAY_PORT: portField('RELAY_PORT', { doc: 'port of the relay health and metrics endpoint', default: 9104 }),
  RELAY_PROGRESS_PER_SECOND: integerField('RELAY_PROGRESS_PER_SECOND', {
    doc: 'progress updates per second per job that reach clients (the latest wins, the final one always goes)',
    default: 4,
    min: 1,
    max: 1000,
  }),
  RELAY_FLUSH_INTERVAL_MS: integerField('RELAY_FLUSH_INTERVAL_MS', {
    doc: 'tick of the relay: logs and errors are written to job_events in one transaction per tick',
    default: 250,
    min: 10,
    max: 60_000,
  }),
  RELAY_SNAPSHOT_INTERVAL_MS: integerField('RELAY_SNAPSHOT_INTERVAL_MS', {
    doc: 'at most one progress snapshot write per job per this many milliseconds',
    default: 1000,
    min: 10,
    max: 3_600_000,
  }),
  RELAY_MAX_BATCH: integerField('RELAY_MAX_BATCH', {
    doc: 'most job_events rows written in one transaction (a larger backlog is written in further batches at once)',
    default: 1000,
    min: 1,
    max: 100_000,
  }),
  RELAY_MAX_PENDING: integerField('RELAY_MAX_PENDING', {
    doc: 'logs and errors held while SQLite is unavailable; past this, new ones are dropped (and counted)',
    default: 50_000,
    min: 1,
    max: 10_000_000,
  }),
  REALTIME_ADAPTER_KEY: FIELDS.REALTIME_ADAPTER_KEY,
} as const;

export const RELAY_CONFIG_FIELDS = [
  ...BASE_FIELDS,
  FIELDS.DB_PATH,
  FIELDS.REDIS_URL,
  FIELDS.HOST,
  ...Object.values(RELAY_FIELDS),
] as const;

export type RelayConfig = ConfigOf<typeof RELAY_CONFIG_FIELDS>;

export function loadRelayConfig(options?: LoadConfigOptions): RelayConfig {
  return loadConfig(RELAY_CONFIG_FIELDS, options);
}
