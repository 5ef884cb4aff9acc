import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Redis } from 'ioredis';
import {
  ALL_EVENT_CHANNELS,
  CONTROL_CANCEL_CHANNEL,
  EVENT_CHANNELS,
  type CancelSignal,
  type ChannelMessages,
} from '@dubgate/contracts/events';
import { closeRedis, createRedisConnection, waitForReady } from '../src/connections.js';
import {
  createEventPublisher,
  createEventSubscriber,
  type EventSubscriber,
  type InvalidMessage,
  type SubscriberEvent,
} from '../src/publisher.js';
import { ContractValidationError } from '../src/validation.js';
import { capturingLogger, rand, redisUrl, uniqueJobId, waitFor } from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 90_000 });

let pub: Redis;
let sub: Redis;
let admin: Redis;
let subName: string;
let subscriber: EventSubscriber | undefined;
// Channels are global: other suites may publish on them too, so each test only looks at its own job id.
let jobId: string;
let received: SubscriberEvent[];
let invalid: InvalidMessage[];
let handlerErrors: unknown[];

const now = () => new Date().toISOString();
const mine = (e: SubscriberEvent) => e.message.jobId === jobId;

function messages(id: string): { [C in keyof ChannelMessages]: ChannelMessages[C] } {
  return {
    'events:progress': { jobId: id, type: 'progress', timestamp: now(), payload: { stage: 'download', percent: 42.5, speed: 1000, eta: 12, seq: 1 } },
    'events:state': {
      jobId: id,
      type: 'state_change',
      timestamp: now(),
      payload: { from: 'QUEUED', to: 'DOWNLOADING', ownerId: 'u1', eventId: 7 },
    },
    'events:log': { jobId: id, type: 'log', timestamp: now(), payload: { level: 'info', message: 'hello', stage: 'download' } },
    'events:error': { jobId: id, type: 'error', timestamp: now(), payload: { code: 'STAGE_FAILED', message: 'boom', stage: 'mux' } },
    'events:notification': {
      jobId: id,
      type: 'notification',
      timestamp: now(),
      payload: { type: 'disk_space_low', title: 'Disk', message: 'low', severity: 'warning' },
    },
  };
}

function subscribeAll(onMessage?: (e: SubscriberEvent) => void | Promise<void>): EventSubscriber {
  subscriber = createEventSubscriber(
    sub,
    [...ALL_EVENT_CHANNELS, CONTROL_CANCEL_CHANNEL],
    onMessage ??
      ((e) => {
        if (mine(e)) received.push(e);
      }),
    {
      onInvalid: (inv) => {
        if (inv.excerpt.includes(jobId)) invalid.push(inv);
      },
      onError: (err) => handlerErrors.push(err),
    },
  );
  return subscriber;
}

beforeEach(async () => {
  jobId = uniqueJobId();
  received = [];
  invalid = [];
  handlerErrors = [];
  subName = `dubgate:subscriber-test-${rand()}`;
  pub = createRedisConnection(redisUrl(), 'publisher', { logger: capturingLogger() });
  sub = createRedisConnection(redisUrl(), 'subscriber', { logger: capturingLogger(), connectionName: subName });
  admin = createRedisConnection(redisUrl(), 'producer', { logger: capturingLogger() });
  await Promise.all([waitForReady(pub), waitForReady(sub), waitForReady(admin)]);
});

afterEach(async () => {
  await subscriber?.close();
  subscriber = undefined;
  await Promise.all([closeRedis(pub), closeRedis(sub), closeRedis(admin)]);
});

describe('event publisher and subscriber', () => {
  it('delivers a valid message on every events channel and control:cancel', async () => {
    await subscribeAll().ready;
    const publisher = createEventPublisher(pub);
    const sent = messages(jobId);
    for (const channel of ALL_EVENT_CHANNELS) {
      expect(await publisher.publish(channel, sent[channel])).toBeGreaterThanOrEqual(1);
    }
    const cancel: CancelSignal = { jobId, stageJobId: `${jobId}_download_g0`, reason: 'user canceled', timestamp: now() };
    await publisher.publishCancel(cancel);

    await waitFor(() => received.length === ALL_EVENT_CHANNELS.length + 1);
    for (const channel of ALL_EVENT_CHANNELS) {
      expect(received.find((e) => e.channel === channel)?.message).toEqual(sent[channel]);
    }
    expect(received.find((e) => e.channel === CONTROL_CANCEL_CHANNEL)?.message).toEqual(cancel);
    expect(invalid).toEqual([]);
  });

  it('refuses invalid messages before they reach Redis', async () => {
    await subscribeAll().ready;
    const publisher = createEventPublisher(pub);
    const good = messages(jobId);
    const bad: unknown[] = [
      { ...good['events:progress'], payload: { stage: 'download', percent: 140 } },
      { ...good['events:progress'], timestamp: 'yesterday' },
      { ...good['events:progress'], type: 'log' },
      { ...good['events:progress'], extra: 1 },
    ];
    for (const m of bad) {
      const err = await publisher.publish(EVENT_CHANNELS.progress, m as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ContractValidationError);
      expect((err as ContractValidationError).code).toBe('PAYLOAD_INVALID');
    }
    await expect(publisher.publishCancel({ jobId, reason: 'x' } as CancelSignal)).rejects.toBeInstanceOf(ContractValidationError);
    await expect(publisher.publish('events:nope' as never, good['events:log'] as never)).rejects.toThrow(/unknown channel/);
    const huge = { ...good['events:log'], payload: { level: 'info' as const, message: 'x'.repeat(3_999) } };
    await expect(createEventPublisher(pub, { maxBytes: 1_000 }).publish(EVENT_CHANNELS.log, huge)).rejects.toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
    });

    // Nothing of the above was published: a marker sent afterwards is the only thing received.
    // One connection delivers in publish order, so once the marker is in, anything sent before
    // it would be too: no pause needed.
    await publisher.publish(EVENT_CHANNELS.log, good['events:log']);
    await waitFor(() => received.length >= 1);
    expect(received.map((e) => e.channel)).toEqual([EVENT_CHANNELS.log]);
  });

  it('survives malformed JSON, schema violations, oversized messages and failing handlers', async () => {
    let calls = 0;
    await subscribeAll(async (e) => {
      if (!mine(e)) return;
      calls++;
      received.push(e);
      if (calls === 1) throw new Error('handler bug');
      if (calls === 2) return Promise.reject(new Error('async handler bug'));
    }).ready;
    const publisher = createEventPublisher(pub);
    await publisher.publishRaw(EVENT_CHANNELS.log, `{"jobId":"${jobId}", not json`);
    await publisher.publishRaw(EVENT_CHANNELS.progress, JSON.stringify({ jobId, type: 'progress', timestamp: now(), payload: {} }));
    await publisher.publishRaw(CONTROL_CANCEL_CHANNEL, JSON.stringify({ jobId, reason: 1 }));
    await publisher.publishRaw(EVENT_CHANNELS.error, `"${jobId}${' '.repeat(70_000)}"`);
    await publisher.publishRaw(EVENT_CHANNELS.state, 'null');
    const good = messages(jobId)['events:log'];
    await publisher.publish(EVENT_CHANNELS.log, good);
    await publisher.publish(EVENT_CHANNELS.log, good);
    await publisher.publish(EVENT_CHANNELS.log, good);

    await waitFor(() => received.length === 3 && invalid.length === 4);
    expect(invalid.map((i) => [i.channel, i.reason])).toEqual([
      [EVENT_CHANNELS.log, 'invalid_json'],
      [EVENT_CHANNELS.progress, 'schema'],
      [CONTROL_CANCEL_CHANNEL, 'schema'],
      [EVENT_CHANNELS.error, 'too_large'],
    ]);
    expect(invalid[1]!.errors.length).toBeGreaterThan(0);
    expect(handlerErrors.map((e) => (e as Error).message)).toEqual(['handler bug', 'async handler bug']);
  });

  it('encode() + publishRaw() carry an outbox message unchanged', async () => {
    await subscribeAll().ready;
    const publisher = createEventPublisher(pub);
    const msg = messages(jobId)['events:state'];
    const text = publisher.encode(EVENT_CHANNELS.state, msg);
    expect(JSON.parse(text)).toEqual(msg);
    expect(() => publisher.encode(EVENT_CHANNELS.state, { ...msg, jobId: 'bad id!' })).toThrow(ContractValidationError);
    await publisher.publishRaw(EVENT_CHANNELS.state, text);
    await waitFor(() => received.length === 1);
    expect(received[0]).toEqual({ channel: EVENT_CHANNELS.state, message: msg });
  });

  it('resubscribes after the subscriber connection is killed', async () => {
    await subscribeAll().ready;
    const list = String(await admin.client('LIST'));
    const line = list.split('\n').find((l) => l.includes(`name=${subName} `));
    const id = /(?:^|\s)id=(\d+)/.exec(line ?? '')?.[1];
    expect(id).toBeDefined();
    // Listened for before the kill: ioredis may be back to 'ready' before a poll would see it down.
    const closed = new Promise<void>((resolve) => sub.once('close', () => resolve()));
    await admin.client('KILL', 'ID', id!);
    await closed;
    await waitForReady(sub, 30_000);
    const publisher = createEventPublisher(pub);
    await waitFor(async () => {
      await publisher.publish(EVENT_CHANNELS.log, messages(jobId)['events:log']);
      return received.length > 0;
    }, 30_000, 100);
  });

  it('stops delivering after close(), which is safe twice', async () => {
    const s = subscribeAll();
    await s.ready;
    await Promise.all([s.close(), s.close()]);
    await s.close();
    // A listener of our own on the same connection, subscribed again: once it has the message,
    // ioredis has emitted it to every listener, so a closed subscriber that still delivered
    // would have done so by then (instead of a pause that only hopes for it).
    const raw: string[] = [];
    const probe = (_channel: string, text: string) => void raw.push(text);
    sub.on('message', probe);
    await sub.subscribe(EVENT_CHANNELS.log);
    await createEventPublisher(pub).publish(EVENT_CHANNELS.log, messages(jobId)['events:log']);
    await waitFor(() => raw.some((text) => text.includes(jobId)));
    sub.off('message', probe);
    expect(received).toEqual([]);
    expect(() => createEventSubscriber(sub, ['events:nope' as never], () => {})).toThrow(/unknown channel/);
    expect(() => createEventSubscriber(sub, [], () => {})).toThrow();
  });
});
