import {
  BASE_FIELDS,
  FIELDS,
  booleanField,
  integerField,
  byteSizeField,
  stringField,
  enumField,
  loadConfig,
  type ConfigOf,
  type LoadConfigOptions,
} from '@dubgate/runtime/config';

/** Settings only the api reads. */
export const API_FIELDS = {
  ALLOW_PRIVATE_URLS: booleanField('ALLOW_PRIVATE_URLS', {
    doc: 'accept job URLs on loopback and private (LAN) addresses; link-local and metadata stay refused',
    default: false,
  }),
  SESSION_TTL_SECONDS: integerField('SESSION_TTL_SECONDS', {
    doc: 'lifetime of a login session (JWT and cookie)',
    default: 12 * 3600,
    min: 60,
    max: 30 * 24 * 3600,
  }),
  TRUST_PROXY: stringField('TRUST_PROXY', {
    doc: 'addresses of trusted reverse proxies (Fastify trustProxy: "false", "true", or a comma list of IPs/CIDRs)',
    default: 'false',
    maxLength: 1000,
  }),
  COOKIE_SECURE: booleanField('COOKIE_SECURE', {
    doc: 'mark the session cookie Secure (set true when served over HTTPS)',
    default: false,
  }),
  BODY_LIMIT_BYTES: byteSizeField('BODY_LIMIT_BYTES', { doc: 'largest accepted request body', default: 64 * 1024, defaultDoc: '64KiB' }),
  LOGIN_MAX_PER_CLIENT: integerField('LOGIN_MAX_PER_CLIENT', {
    doc: 'login attempts per client address per minute',
    default: 20,
    min: 1,
    max: 100_000,
  }),
  DUBGATE_FAILPOINT: enumField('DUBGATE_FAILPOINT', ['off', 'after-commit'], {
    doc: 'fault tests only: "after-commit" kills the process right after a new job is committed, before it is enqueued',
    default: 'off',
  }),
  API_MAX_PENDING_CREATES: integerField('API_MAX_PENDING_CREATES', {
    doc: 'job creations in progress (waiting for their commit or for Redis) past which POST /api/jobs answers 503 with Retry-After, instead of letting clients time out',
    default: 2000,
    min: 1,
    max: 1_000_000,
  }),
  LOGIN_MAX_PER_USERNAME: integerField('LOGIN_MAX_PER_USERNAME', {
    doc: 'login attempts per username per 5 minutes',
    default: 10,
    min: 1,
    max: 100_000,
  }),
} as const;

export const API_CONFIG_FIELDS = [
  ...BASE_FIELDS,
  FIELDS.DB_PATH,
  FIELDS.REDIS_URL,
  FIELDS.MEDIA_ROOT,
  FIELDS.API_PORT,
  FIELDS.HOST,
  FIELDS.JWT_SECRET,
  FIELDS.ADMIN_USERNAME,
  FIELDS.ADMIN_PASSWORD,
  FIELDS.MIN_FREE_DISK_BYTES,
  FIELDS.MAX_RETRIES,
  FIELDS.MAX_RETRIES_DOWNLOAD,
  FIELDS.MAX_RETRIES_DUB,
  FIELDS.MAX_RETRIES_MUX,
  FIELDS.STAGE_BACKOFF_MS,
  ...Object.values(API_FIELDS),
] as const;

export type ApiConfig = ConfigOf<typeof API_CONFIG_FIELDS> & {
  /** Key prefixes, settable so tests share one Redis. */
  queuePrefix?: string;
  gatewayKeyPrefix?: string;
};

export function loadApiConfig(options?: LoadConfigOptions): ApiConfig {
  return loadConfig(API_CONFIG_FIELDS, options);
}
