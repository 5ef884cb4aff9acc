import type { Redis } from 'ioredis';
import {
  CONTROL_CANCEL_CHANNEL,
  EVENT_CHANNELS,
  MAX_EVENT_MESSAGE_BYTES,
  type CancelSignal,
  type ChannelMessages,
  type EventChannel,
} from '@dubgate/contracts/events';
import {
  ContractValidationError,
  cancelSignalValidator,
  channelValidators,
  encodeMessage,
  type Validator,
} from './validation.js';
import { consoleLogger, type Logger } from './connections.js';

export { EVENT_CHANNELS, CONTROL_CANCEL_CHANNEL };

/** Every channel this system publishes on, with the message each carries. */
export interface SubscribableMessages extends ChannelMessages {
  'control:cancel': CancelSignal;
}
export type SubscribableChannel = keyof SubscribableMessages;

function validatorFor(channel: string): Validator<unknown> | undefined {
  if (channel === CONTROL_CANCEL_CHANNEL) return cancelSignalValidator;
  return Object.hasOwn(channelValidators, channel) ? channelValidators[channel as EventChannel] : undefined;
}

export interface EventPublisherOptions {
  /**
   * Check each message against its channel's schema before sending (default true). The check is
   * compiled once and costs microseconds; a bad message is refused here, at its source, instead
   * of being dropped silently by every consumer.
   */
  validate?: boolean;
  /** Default MAX_EVENT_MESSAGE_BYTES, the limit consumers enforce. */
  maxBytes?: number;
}

export interface EventPublisher {
  /** Validates, serializes and publishes; resolves to the number of receivers. Throws ContractValidationError. */
  publish<C extends EventChannel>(channel: C, message: ChannelMessages[C]): Promise<number>;
  /** Publishes a cancel signal on control:cancel. */
  publishCancel(signal: CancelSignal): Promise<number>;
  /** Publishes text as is: for the outbox, which stored the output of `encode`. */
  publishRaw(channel: string, text: string): Promise<number>;
  /** Validates and serializes without publishing (what the outbox stores inside its transaction). */
  encode<C extends SubscribableChannel>(channel: C, message: SubscribableMessages[C]): string;
}

/** Publisher on `redis` (role 'publisher' or 'producer'; never a subscriber connection). */
export function createEventPublisher(redis: Redis, options: EventPublisherOptions = {}): EventPublisher {
  const { validate = true, maxBytes = MAX_EVENT_MESSAGE_BYTES } = options;

  function encode(channel: string, message: unknown): string {
    const v = validatorFor(channel);
    if (!v) throw new ContractValidationError('PAYLOAD_INVALID', channel, ['unknown channel']);
    if (validate && !v.check(message)) throw new ContractValidationError('PAYLOAD_INVALID', channel, v.errors(message));
    return encodeMessage(channel, message, maxBytes);
  }

  return {
    encode: (channel, message) => encode(channel, message),
    publish: async (channel, message) => redis.publish(channel, encode(channel, message)),
    publishCancel: async (signal) => redis.publish(CONTROL_CANCEL_CHANNEL, encode(CONTROL_CANCEL_CHANNEL, signal)),
    publishRaw: async (channel, text) => {
      if (!channel) throw new Error('channel must be a non-empty string');
      return redis.publish(channel, text);
    },
  };
}

export type SubscriberEvent<C extends SubscribableChannel = SubscribableChannel> = {
  [K in C]: { channel: K; message: SubscribableMessages[K] };
}[C];

export interface InvalidMessage {
  channel: string;
  reason: 'too_large' | 'invalid_json' | 'schema';
  errors: string[];
  /** The start of the raw text (at most 512 characters), for logs. */
  excerpt: string;
}

export interface EventSubscriberOptions {
  /** Messages that are too large, not JSON or not matching the schema. Default: logged at warn. */
  onInvalid?: (invalid: InvalidMessage) => void;
  /** A handler that threw or rejected. Default: logged at error. */
  onError?: (err: unknown, event: SubscriberEvent) => void;
  /** Check messages against their schema (default true); false only parses JSON. */
  validate?: boolean;
  maxBytes?: number;
  logger?: Logger;
}

export interface EventSubscriber {
  /** Resolves once Redis confirmed the subscriptions. */
  ready: Promise<void>;
  channels: readonly SubscribableChannel[];
  /** Unsubscribes and stops delivering; the connection stays open (the caller owns it). Safe twice. */
  close(): Promise<void>;
}

/**
 * Subscribes `redis` (a dedicated 'subscriber' connection: ioredis restores the subscriptions after
 * a reconnect) to `channels`. Never throws on bad input: such messages go to `onInvalid`.
 * One subscriber per connection: close() unsubscribes its channels.
 */
export function createEventSubscriber<C extends SubscribableChannel>(
  redis: Redis,
  channels: readonly C[],
  onMessage: (event: SubscriberEvent<C>) => void | Promise<void>,
  options: EventSubscriberOptions = {},
): EventSubscriber {
  const { validate = true, maxBytes = MAX_EVENT_MESSAGE_BYTES } = options;
  const logger = options.logger ?? consoleLogger;
  const onInvalid = options.onInvalid ?? ((inv) => logger.warn({ ...inv }, 'invalid Pub/Sub message dropped'));
  const onError = options.onError ?? ((err, ev) => logger.error({ err, channel: ev.channel }, 'Pub/Sub handler failed'));

  const wanted = new Set<string>(channels);
  if (wanted.size === 0) throw new Error('subscribe to at least one channel');
  for (const ch of wanted) {
    if (!validatorFor(ch)) throw new Error(`unknown channel "${ch}"`);
  }
  let closed = false;

  const invalid = (channel: string, text: string, reason: InvalidMessage['reason'], errors: string[]) => {
    try {
      onInvalid({ channel, reason, errors, excerpt: text.slice(0, 512) });
    } catch {
      // A faulty callback must not break delivery of the next message.
    }
  };

  const listener = (channel: string, text: string) => {
    if (closed || !wanted.has(channel)) return;
    if (Buffer.byteLength(text, 'utf8') > maxBytes) return invalid(channel, text, 'too_large', [`larger than ${maxBytes} bytes`]);
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch (err) {
      return invalid(channel, text, 'invalid_json', [(err as Error).message]);
    }
    if (validate) {
      const v = validatorFor(channel)!;
      if (!v.check(message)) return invalid(channel, text, 'schema', v.errors(message));
    }
    const event = { channel, message } as SubscriberEvent<C>;
    try {
      const r = onMessage(event);
      if (r && typeof (r as Promise<void>).then === 'function') {
        (r as Promise<void>).then(undefined, (err: unknown) => safeOnError(err, event));
      }
    } catch (err) {
      safeOnError(err, event);
    }
  };
  const safeOnError = (err: unknown, event: SubscriberEvent<C>) => {
    const ev = event as SubscriberEvent;
    try {
      onError(err, ev);
    } catch {
      // Same as above: never let the error path throw into ioredis' event loop.
    }
  };

  redis.on('message', listener);
  // Subscribe once the connection is ready: a SUBSCRIBE sent during the handshake puts the
  // connection in subscriber mode before ioredis' ready check, which then fails and the
  // subscription is lost. ioredis itself resubscribes after later reconnects.
  const ready = (
    redis.status === 'ready'
      ? redis.subscribe(...wanted)
      : new Promise<unknown>((resolve, reject) => {
          redis.once('ready', () => redis.subscribe(...wanted).then(resolve, reject));
        })
  ).then(() => undefined);
  // Handled here so a failed subscribe is never an unhandled rejection; callers see it via `ready`.
  ready.catch(() => {});

  let closing: Promise<void> | undefined;
  return {
    ready,
    channels: [...wanted] as SubscribableChannel[],
    close: () =>
      (closing ??= (async () => {
        closed = true;
        redis.off('message', listener);
        // Without a live connection there is nothing to unsubscribe from.
        if (redis.status !== 'ready') return;
        let timer: NodeJS.Timeout | undefined;
        // Bounded: a hung Redis must not stall a shutdown.
        await Promise.race([
          redis.unsubscribe(...wanted).catch(() => {}),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, 2_000);
          }),
        ]);
        clearTimeout(timer);
      })()),
  };
}
