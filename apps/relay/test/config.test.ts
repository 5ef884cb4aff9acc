import { describe, expect, it } from 'vitest';
import { ConfigError } from '@dubgate/runtime/config';
import { loadRelayConfig } from '../src/config.js';

describe('relay configuration', () => {
  it('has the documented defaults', () => {
    const c = loadRelayConfig({ env: { REDIS_URL: 'redis://127.0.0.1:6398', DB_PATH: ':memory:' }, envFile: false });
    expect(c).toMatchObject({
      RELAY_PORT: 9104,
      RELAY_PROGRESS_PER_SECOND: 4,
      RELAY_FLUSH_INTERVAL_MS: 250,
      RELAY_SNAPSHOT_INTERVAL_MS: 1000,
      RELAY_MAX_BATCH: 1000,
      RELAY_MAX_PENDING: 50_000,
      REALTIME_ADAPTER_KEY: 'socket.io',
      SHUTDOWN_TIMEOUT_MS: 30_000,
    });
  });

  it('reports every bad value at once', () => {
    let err: unknown;
    try {
      loadRelayConfig({
        env: { REDIS_URL: 'http://nope', RELAY_PROGRESS_PER_SECOND: '0', RELAY_FLUSH_INTERVAL_MS: 'soon', REALTIME_ADAPTER_KEY: 'a b' },
        envFile: false,
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => i.name).sort()).toEqual(
      ['REALTIME_ADAPTER_KEY', 'REDIS_URL', 'RELAY_FLUSH_INTERVAL_MS', 'RELAY_PROGRESS_PER_SECOND'].sort(),
    );
  });
});
