import {
  BASE_FIELDS,
  FIELDS,
  byteSizeField,
  defineField,
  integerField,
  loadConfig,
  stringField,
  type ConfigOf,
  type LoadConfigOptions,
} from '@dubgate/runtime/config';

/**
 * `REALTIME_ALLOWED_ORIGINS`: a comma list of browser origins (`https://app.example.com`), or `*`.
 * Same-origin pages and clients that send no Origin (CLIs, servers) are always allowed.
 */
export function parseOrigins(raw: string): string[] {
  const out: string[] = [];
  for (const part of raw.split(',')) {
    const text = part.trim();
    if (!text) continue;
    if (text === '*') {
      out.push('*');
      continue;
    }
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new Error(`"${text}" is not an origin such as https://app.example.com`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== text.replace(/\/$/, '')) {
      throw new Error(`"${text}" is not an origin (scheme://host[:port], no path)`);
    }
    out.push(url.origin);
  }
  return out;
}

/** Settings only realtime nodes read. */
export const REALTIME_FIELDS = {
  REALTIME_ALLOWED_ORIGINS: defineField({
    name: 'REALTIME_ALLOWED_ORIGINS',
    doc: 'browser origins allowed to connect besides the same origin (comma list, or *); clients without Origin are allowed',
    defaultDoc: 'unset: same origin only',
    parse: (raw) => parseOrigins(raw),
    fallback: () => [] as string[],
  }),
  REALTIME_AUTH_TIMEOUT_MS: integerField('REALTIME_AUTH_TIMEOUT_MS', {
    doc: 'a socket that has not authenticated within this time is disconnected',
    default: 5000,
    min: 50,
    max: 300_000,
  }),
  REALTIME_MAX_SUBSCRIPTIONS: integerField('REALTIME_MAX_SUBSCRIPTIONS', {
    doc: 'jobs one socket may subscribe to at once',
    default: 500,
    min: 1,
    max: 100_000,
  }),
  REALTIME_MAX_PAYLOAD_BYTES: byteSizeField('REALTIME_MAX_PAYLOAD_BYTES', {
    doc: 'largest message a client may send (Socket.IO maxHttpBufferSize); larger ones close the connection',
    default: 16 * 1024,
    defaultDoc: '16KiB',
  }),
  REALTIME_EVENTS_PER_SECOND: integerField('REALTIME_EVENTS_PER_SECOND', {
    doc: 'events per second a socket may send (token bucket refill rate)',
    default: 20,
    min: 1,
    max: 100_000,
  }),
  REALTIME_EVENT_BURST: integerField('REALTIME_EVENT_BURST', {
    doc: 'events a socket may send in a burst (token bucket size)',
    default: 40,
    min: 1,
    max: 100_000,
  }),
  REALTIME_RATE_LIMIT_DISCONNECT: integerField('REALTIME_RATE_LIMIT_DISCONNECT', {
    doc: 'a socket that has this many events refused for rate within 10 seconds is disconnected',
    default: 100,
    min: 1,
    max: 1_000_000,
  }),
  REALTIME_DRAIN_TIMEOUT_MS: integerField('REALTIME_DRAIN_TIMEOUT_MS', {
    doc: 'on shutdown, how long to wait for clients to leave before closing what is left (within SHUTDOWN_TIMEOUT_MS)',
    default: 5000,
    min: 0,
    max: 600_000,
  }),
  REALTIME_ADAPTER_KEY: FIELDS.REALTIME_ADAPTER_KEY,
} as const;

export const REALTIME_CONFIG_FIELDS = [
  ...BASE_FIELDS,
  // JWT_SECRET's fallback reads the secret file beside DB_PATH; realtime never opens the database.
  FIELDS.DB_PATH,
  FIELDS.REDIS_URL,
  FIELDS.REALTIME_PORT,
  FIELDS.HOST,
  FIELDS.JWT_SECRET,
  ...Object.values(REALTIME_FIELDS),
] as const;

export type RealtimeConfig = ConfigOf<typeof REALTIME_CONFIG_FIELDS> & {
  /** Prefix of the gateway's own Redis keys (job owners, revocations); settable so tests share one Redis. */
  gatewayKeyPrefix?: string;
};

export function loadRealtimeConfig(options?: LoadConfigOptions): RealtimeConfig {
  return loadConfig(REALTIME_CONFIG_FIELDS, options);
}
