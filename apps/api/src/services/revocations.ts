import type { Redis } from 'ioredis';
import type { GatewayKeys } from '@dubgate/queues/names';
import { SESSION_REVOKED_CHANNEL, USER_DISABLED_CHANNEL } from '@dubgate/contracts/auth';

/** Realtime nodes never read SQLite: a key refuses new connections, a message closes live ones. */
export function createRevocations(redis: Redis, keys: Pick<GatewayKeys, 'revokedSessionKey' | 'userDisabledKey'>) {
  return {
    async publishRevocation(sessionId: string, expiresAt: Date): Promise<void> {
      const ttlMs = Math.max(1_000, expiresAt.getTime() - Date.now());
      await redis.set(keys.revokedSessionKey(sessionId), '1', 'PX', ttlMs);
      await redis.publish(SESSION_REVOKED_CHANNEL, sessionId);
    },
    async publishUserDisabled(userId: string): Promise<void> {
      await redis.set(keys.userDisabledKey(userId), '1');
      await redis.publish(USER_DISABLED_CHANNEL, userId);
    },
    async clearUserDisabled(userId: string): Promise<void> {
      await redis.del(keys.userDisabledKey(userId));
    },
  };
}
