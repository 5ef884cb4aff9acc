/**
 * @socket.io/redis-adapter, measured: for every broadcast packet that arrives from Redis (the
 * relay's @socket.io/redis-emitter, or another node) it reports the event name, how many sockets of
 * this node it was written to, and its payload (for the lag from the payload's timestamp).
 *
 * The adapter has no hook for this, so three of its internals are wrapped, all synchronous within
 * one received message: `onmessage` (a Redis message; it decodes and calls the base broadcast),
 * `_encode` (sees the packet) and `apply` (visits each recipient). Both packages are pinned to
 * exact versions; the delivery tests fail if an upgrade moves these internals. A message that
 * cannot be decoded is dropped and reported instead of throwing inside ioredis.
 */
import { RedisAdapter, type RedisAdapterOptions } from '@socket.io/redis-adapter';
import type { Namespace, ServerOptions } from 'socket.io';

/** What Socket.IO's `adapter` option takes. */
type AdapterFactory = (nsp: Namespace) => InstanceType<Extract<ServerOptions['adapter'], abstract new (...args: never) => unknown>>;

interface Packet {
  type?: number;
  data?: unknown;
  nsp?: string;
}

/** The members of RedisAdapter (private in its typings) that this wrapper overrides. */
interface AdapterInternals {
  onmessage(pattern: unknown, channel: unknown, msg: unknown): void;
  _encode(packet: Packet, packetOpts: unknown): unknown;
  apply(opts: unknown, callback: (socket: unknown) => void): void;
}
type InternalCtor = new (nsp: unknown, pubClient: unknown, subClient: unknown, opts?: Partial<RedisAdapterOptions>) => AdapterInternals;

export interface DeliveryHooks {
  /** One broadcast packet from Redis was written to `recipients` sockets of this node (maybe 0). */
  onDelivered(event: unknown, recipients: number, payload: unknown): void;
  /** A message on the adapter's channels could not be handled; it was dropped. */
  onMalformed(err: unknown): void;
}

interface Delivery {
  packet: Packet | undefined;
  recipients: number;
}

const Base = RedisAdapter as unknown as InternalCtor;

class MeteredRedisAdapter extends Base {
  private delivery: Delivery | null = null;

  constructor(
    nsp: unknown,
    pubClient: unknown,
    subClient: unknown,
    opts: Partial<RedisAdapterOptions>,
    private readonly hooks: DeliveryHooks,
  ) {
    super(nsp, pubClient, subClient, opts);
  }

  override onmessage(pattern: unknown, channel: unknown, msg: unknown): void {
    const delivery: Delivery = { packet: undefined, recipients: 0 };
    this.delivery = delivery;
    try {
      super.onmessage(pattern, channel, msg);
    } catch (err) {
      this.safely(() => this.hooks.onMalformed(err));
      return;
    } finally {
      this.delivery = null;
    }
    const packet = delivery.packet;
    if (packet && Array.isArray(packet.data)) {
      const [event, payload] = packet.data as unknown[];
      this.safely(() => this.hooks.onDelivered(event, delivery.recipients, payload));
    }
  }

  override _encode(packet: Packet, packetOpts: unknown): unknown {
    if (this.delivery) this.delivery.packet = packet;
    return super._encode(packet, packetOpts);
  }

  override apply(opts: unknown, callback: (socket: unknown) => void): void {
    const delivery = this.delivery;
    if (!delivery) {
      super.apply(opts, callback);
      return;
    }
    super.apply(opts, (socket) => {
      delivery.recipients += 1;
      callback(socket);
    });
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch {
      // Metrics never break delivery.
    }
  }
}

/** Like `createAdapter(pubClient, subClient, opts)` from @socket.io/redis-adapter, with delivery hooks. */
export function createMeteredAdapter(
  pubClient: unknown,
  subClient: unknown,
  opts: Partial<RedisAdapterOptions>,
  hooks: DeliveryHooks,
): AdapterFactory {
  // Socket.IO calls this with `new`, so it must be a function, not an arrow (like createAdapter's).
  return function meteredAdapter(nsp: Namespace) {
    return new MeteredRedisAdapter(nsp, pubClient, subClient, opts, hooks) as unknown as ReturnType<AdapterFactory>;
  };
}
