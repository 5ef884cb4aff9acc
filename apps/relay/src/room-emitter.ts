import type { Redis } from 'ioredis';
import { Emitter } from '@socket.io/redis-emitter';
import type { ServerToClientEvents } from '@dubgate/contracts/ws';

export type ServerEventName = keyof ServerToClientEvents;
export type ServerEventPayload<E extends ServerEventName> = Parameters<ServerToClientEvents[E]>[0];

export interface RoomEmitterOptions {
  /** The Socket.IO redis-adapter `key` option of the realtime nodes. Default "socket.io". */
  key?: string;
  /** A publish Redis refused, or an event that could not be encoded. Never throws back. */
  onError?: (err: unknown, event: string) => void;
  /** After each event handed to Redis. */
  onEmitted?: (event: ServerEventName) => void;
}

export interface RoomEmitter {
  /**
   * Emits `event` to the sockets in any of `rooms`, on every realtime node. Returns false (and
   * sends nothing) when `rooms` is empty: an empty room list would mean "everyone".
   */
  emit<E extends ServerEventName>(rooms: readonly string[], event: E, payload: ServerEventPayload<E>): boolean;
  /** Resolves once every publish issued so far has been answered by Redis (bounded by `timeoutMs`). */
  flushed(timeoutMs?: number): Promise<void>;
  readonly key: string;
}

/**
 * The relay's only way to reach clients: @socket.io/redis-emitter on a dedicated 'publisher'
 * connection. The emitter publishes fire-and-forget (it ignores the promise ioredis returns), so
 * we hand it a client whose publish catches rejections: an outage never becomes an unhandled
 * rejection. ioredis answers commands in order, so waiting for the last publish waits for all.
 */
export function createRoomEmitter(redis: Redis, opts: RoomEmitterOptions = {}): RoomEmitter {
  const key = opts.key ?? 'socket.io';
  let last: Promise<unknown> = Promise.resolve();
  let currentEvent = '';

  const client = {
    publish(channel: string, message: string | Buffer): Promise<unknown> {
      const event = currentEvent;
      const p = redis.publish(channel, message).catch((err: unknown) => {
        safe(() => opts.onError?.(err, event));
      });
      last = p;
      return p;
    },
  };
  const emitter = new Emitter<ServerToClientEvents>(client, { key });

  return {
    key,
    emit(rooms, event, payload) {
      if (rooms.length === 0) return false;
      currentEvent = event;
      try {
        // The emitter's typed emit needs the literal event type; the payload type is bound by E.
        (emitter.to([...rooms]) as unknown as { emit(ev: string, arg: unknown): true }).emit(event, payload);
      } catch (err) {
        safe(() => opts.onError?.(err, event));
        return false;
      }
      safe(() => opts.onEmitted?.(event));
      return true;
    },
    async flushed(timeoutMs = 2_000) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        last,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    },
  };
}

function safe(fn: () => void): void {
  try {
    fn();
  } catch {
    // Callbacks must not break the emit path.
  }
}
