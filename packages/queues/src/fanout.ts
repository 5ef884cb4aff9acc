import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Type, type Static } from '@sinclair/typebox';
import { SERVER_EVENT_NAMES, type ServerToClientEvents } from '@dubgate/contracts/ws';

/**
 * Relay → realtime fan-out: the events the relay sends to Socket.IO rooms, many to one Redis
 * message, on a channel named after the realtime nodes' adapter key. Each realtime node emits
 * every event of a batch to its own sockets in those rooms.
 *
 * Why not @socket.io/redis-emitter (one PUBLISH per event, each decoded by every node's adapter):
 * measured at 25,000 progress events/s to 1,000 clients (bench/run.mjs fan-out, CPU from /proc),
 * that path cost the relay as much CPU per event as the bare Socket.IO server spends delivering
 * it, and on a 2-core machine the relay and the realtime node together saturated it. A batch
 * per event-loop turn makes the relay's Redis cost, and each node's decode, one per batch.
 * Order is kept: one publisher connection, one subscriber connection per node, events in
 * emit order. Node-to-node traffic (and any other emitter) still uses the adapter channels.
 */

export type ServerEventName = keyof ServerToClientEvents;
export type ServerEventPayload<E extends ServerEventName> = Parameters<ServerToClientEvents[E]>[0];

/** Events in one Redis message, at most. */
export const FANOUT_MAX_EVENTS = 500;
/** Bytes of one Redis message, at most (a batch is cut before it would grow past this). */
export const FANOUT_MAX_BYTES = 1024 * 1024;
/** Rooms one event may name. */
export const FANOUT_MAX_ROOMS = 64;

/** The channel for the realtime nodes sharing this Socket.IO adapter key. */
export function fanoutChannel(adapterKey: string): string {
  // Outside the adapter's own `<key>#<nsp>#...` channels, so its pattern never matches it.
  return `${adapterKey}#relay`;
}

const FanoutEventSchema = Type.Object(
  {
    rooms: Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { minItems: 1, maxItems: FANOUT_MAX_ROOMS }),
    event: Type.Union(SERVER_EVENT_NAMES.map((name) => Type.Literal(name))),
    payload: Type.Object({}),
  },
  { additionalProperties: false },
);
const FanoutBatchSchema = Type.Object(
  { v: Type.Literal(1), events: Type.Array(FanoutEventSchema, { minItems: 1, maxItems: FANOUT_MAX_EVENTS }) },
  { additionalProperties: false },
);
export type FanoutEvent = Static<typeof FanoutEventSchema>;
const checkBatch = TypeCompiler.Compile(FanoutBatchSchema);

export type FanoutRefusal = 'too_large' | 'invalid_json' | 'schema';
export type ParsedFanout = { ok: true; events: FanoutEvent[] } | { ok: false; reason: FanoutRefusal };

/** Decodes one fan-out message; anything malformed is refused whole, with a reason to count. */
export function parseFanoutMessage(raw: string | Buffer): ParsedFanout {
  if (Buffer.byteLength(raw) > FANOUT_MAX_BYTES) return { ok: false, reason: 'too_large' };
  let value: unknown;
  try {
    value = JSON.parse(raw.toString());
  } catch {
    return { ok: false, reason: 'invalid_json' };
  }
  if (!checkBatch.Check(value)) return { ok: false, reason: 'schema' };
  return { ok: true, events: value.events };
}

export interface FanoutPublisherOptions {
  /** The realtime nodes' Socket.IO adapter key. Default "socket.io". */
  key?: string;
  /** A publish Redis refused, or an event that could not be encoded. Never throws back. */
  onError?: (err: unknown, events: number) => void;
  /** After each event is queued for the next batch. */
  onEmitted?: (event: ServerEventName) => void;
  maxEvents?: number;
  maxBytes?: number;
}

export interface FanoutPublisher {
  /**
   * Queues `event` for the sockets in any of `rooms`, on every realtime node; the batch leaves at
   * the end of this event-loop turn. Returns false (and queues nothing) when `rooms` is empty
   * or the payload cannot be encoded.
   */
  emit<E extends ServerEventName>(rooms: readonly string[], event: E, payload: ServerEventPayload<E>): boolean;
  /** Sends the queued batch now instead of at the end of the turn. */
  flush(): void;
  /** Resolves once every event emitted so far has been handed to Redis and answered (bounded). */
  flushed(timeoutMs?: number): Promise<void>;
  readonly channel: string;
}

/** The relay's side, on a 'publisher' connection. */
export function createFanoutPublisher(redis: { publish(channel: string, message: string): Promise<unknown> }, opts: FanoutPublisherOptions = {}): FanoutPublisher {
  const channel = fanoutChannel(opts.key ?? 'socket.io');
  const maxEvents = opts.maxEvents ?? FANOUT_MAX_EVENTS;
  const maxBytes = opts.maxBytes ?? FANOUT_MAX_BYTES;
  const HEAD = '{"v":1,"events":[';
  const TAIL = ']}';
  let parts: string[] = [];
  let bytes = HEAD.length + TAIL.length;
  let scheduled = false;
  let last: Promise<unknown> = Promise.resolve();

  function safe(fn: () => void): void {
    try {
      fn();
    } catch {
      // Callbacks must not break the emit path.
    }
  }

  function flush(): void {
    if (parts.length === 0) return;
    const n = parts.length;
    const message = HEAD + parts.join(',') + TAIL;
    parts = [];
    bytes = HEAD.length + TAIL.length;
    last = redis.publish(channel, message).catch((err: unknown) => safe(() => opts.onError?.(err, n)));
  }

  return {
    channel,
    emit(rooms, event, payload) {
      if (rooms.length === 0) return false;
      let part: string;
      try {
        part = JSON.stringify({ rooms, event, payload });
      } catch (err) {
        safe(() => opts.onError?.(err, 1));
        return false;
      }
      const size = Buffer.byteLength(part) + 1;
      if (parts.length >= maxEvents || (parts.length > 0 && bytes + size > maxBytes)) flush();
      parts.push(part);
      bytes += size;
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          flush();
        });
      }
      safe(() => opts.onEmitted?.(event));
      return true;
    },
    flush,
    async flushed(timeoutMs = 2_000) {
      flush();
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
