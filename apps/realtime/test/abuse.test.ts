// Bad client input is survived and counted: unknown events, wrong argument types, prototype
// pollution attempts, undecodable packets, oversized messages, floods. Never a crash, never an
// unhandled exception (vitest fails the run on one), and the node keeps serving others.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rooms, type AuthenticateAck, type SubscriptionAck, type WsError } from '@dubgate/contracts/ws';
import {
  connected,
  createTestEnv,
  disconnected,
  makeUser,
  manualClock,
  metricValue,
  metricsOf,
  nextEvent,
  request,
  waitFor,
  type Client,
  type TestEnv,
  type TestNode,
} from './helpers.js';

let env: TestEnv;
let node: TestNode;

beforeEach(async () => {
  env = createTestEnv('abuse');
  node = await env.startNode({ REALTIME_MAX_PAYLOAD_BYTES: '8KiB' });
});
afterEach(async () => {
  await env.cleanup();
});

async function authed(n: TestNode = node): Promise<{ socket: Client; errors: WsError[] }> {
  const socket = env.connect(n.url, { auth: { token: makeUser().token } });
  await connected(socket);
  const errors: WsError[] = [];
  socket.on('error', (e) => errors.push(e));
  return { socket, errors };
}

/** The node still serves: a new client connects, subscribes and receives. */
async function stillServes(n: TestNode = node): Promise<void> {
  const user = makeUser();
  await env.setOwner('health-check', user.id);
  const socket = env.connect(n.url, { auth: { token: user.token } });
  await connected(socket);
  expect((await request<SubscriptionAck>(socket, 'subscribe', ['health-check'])).results[0]?.accepted).toBe(true);
  env.emitter.to(rooms.job('health-check')).emit('job_removed', { jobId: 'health-check' });
  await nextEvent(socket, 'job_removed');
  socket.disconnect();
}

const emitRaw = (socket: Client, event: string, ...args: unknown[]) => (socket.emit as (ev: string, ...a: unknown[]) => void)(event, ...args);

describe('malformed and unknown client events', () => {
  it('unknown events get an error event (or a refused ack) and are counted', async () => {
    const { socket, errors } = await authed();
    emitRaw(socket, 'hack_the_planet', { a: 1 });
    emitRaw(socket, 'error', 'clients may not send error');
    emitRaw(socket, 'constructor');
    emitRaw(socket, '__proto__', ['x']);
    await waitFor(() => errors.length === 4);
    expect(errors.every((e) => e.code === 'VALIDATION_FAILED' && /Unknown event/.test(e.message))).toBe(true);
    const ack = await request<{ ok: boolean; error: { code: string } }>(socket, 'drop_database');
    expect(ack).toEqual({ ok: false, error: { code: 'VALIDATION_FAILED', message: expect.any(String) } });
    expect(metricValue(await metricsOf(node), 'dubgate_realtime_events_refused_total', { reason: 'unknown_event' })).toBe(5);
    expect(socket.connected).toBe(true);
  });

  it('wrong argument types, extra arguments and prototype-polluting objects are refused, without a crash', async () => {
    const { socket, errors } = await authed();
    const refused = { ok: false, results: [], error: { code: 'VALIDATION_FAILED', message: expect.any(String) } };
    const polluting = JSON.parse('{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": "yes"}}}') as unknown;
    for (const args of [
      [polluting],
      [[polluting]],
      [{ length: 1, 0: 'j' }],
      [[Buffer.from('job')]],
      [['ok'], 'extra'],
      [['a'], { also: 'extra' }],
      [],
      [[['nested']]],
      [[null]],
    ]) {
      expect(await request<SubscriptionAck>(socket, 'subscribe', ...args)).toEqual(refused);
      expect(await request<SubscriptionAck>(socket, 'unsubscribe', ...args)).toEqual(refused);
    }
    expect(await request<AuthenticateAck>(socket, 'authenticate', polluting)).toMatchObject({ ok: false });
    // Without an ack: an error event instead.
    emitRaw(socket, 'subscribe', 42);
    await waitFor(() => errors.some((e) => e.code === 'VALIDATION_FAILED'));
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const text = await metricsOf(node);
    expect(metricValue(text, 'dubgate_realtime_events_refused_total', { reason: 'invalid_args' })).toBe(19);
    expect(metricValue(text, 'dubgate_realtime_events_refused_total', { reason: 'already_authenticated' })).toBe(1);
    expect(socket.connected).toBe(true);
    await stillServes();
  });

  it('an undecodable packet closes only that connection, and is counted', async () => {
    const { socket } = await authed();
    const other = await authed();
    const gone = disconnected(socket);
    // Raw Engine.IO messages that socket.io-parser refuses: broken JSON, a reserved event name.
    (socket.io.engine as unknown as { write(msg: string): void }).write('2["subscribe",');
    expect(await gone).toBe('transport close');
    const bad2 = await authed();
    const gone2 = disconnected(bad2.socket);
    (bad2.socket.io.engine as unknown as { write(msg: string): void }).write('2["disconnect"]');
    await gone2;
    await waitFor(async () => metricValue(await metricsOf(node), 'dubgate_realtime_events_refused_total', { reason: 'malformed_packet' }) === 2);
    expect(other.socket.connected).toBe(true);
    await stillServes();
  });

  it('a message over REALTIME_MAX_PAYLOAD_BYTES closes that connection (the client may reconnect), and is counted', async () => {
    const { socket } = await authed();
    const gone = disconnected(socket);
    socket.emit('subscribe', ['x'.repeat(20_000)]);
    expect(await gone).toMatch(/transport (close|error)/);
    await waitFor(async () => metricValue(await metricsOf(node), 'dubgate_realtime_events_refused_total', { reason: 'payload_too_large' }) === 1);
    // Also over long-polling: the request is answered 413.
    const polling = env.connect(node.url, { transports: ['polling'], auth: { token: makeUser().token } });
    await connected(polling);
    const gonePolling = disconnected(polling);
    polling.emit('subscribe', ['y'.repeat(20_000)]);
    await gonePolling;
    await stillServes();
  });
});

describe('rate limits', () => {
  it('events over the rate are refused with RATE_LIMITED; sustained abuse disconnects', async () => {
    // The node's rate-limit clock moves only when the test moves it: no token comes back while the
    // events travel, however slow the machine.
    const time = manualClock(1_000_000);
    const limited = await env.startNode(
      { REALTIME_EVENTS_PER_SECOND: '5', REALTIME_EVENT_BURST: '5', REALTIME_RATE_LIMIT_DISCONNECT: '40' },
      undefined,
      { now: time.read },
    );
    const { socket, errors } = await authed(limited);
    const acks = await Promise.all(Array.from({ length: 10 }, () => request<SubscriptionAck>(socket, 'unsubscribe', ['j'])));
    const codes = acks.map((a) => (a.ok ? 'ok' : a.error?.code));
    expect(codes.filter((c) => c === 'ok').length).toBe(5);
    expect(codes.filter((c) => c === 'RATE_LIMITED').length).toBe(5);

    // Without acks: one RATE_LIMITED error event per second at most, not one per event.
    for (let i = 0; i < 10; i++) socket.emit('unsubscribe', ['j']);
    await waitFor(() => errors.some((e) => e.code === 'RATE_LIMITED'));
    // Answers come in order: once this (refused) one is back, the ten before it were handled and
    // any error event they caused has arrived.
    expect((await request<SubscriptionAck>(socket, 'unsubscribe', ['j'])).error?.code).toBe('RATE_LIMITED');
    expect(errors.filter((e) => e.code === 'RATE_LIMITED').length).toBe(1);

    // The bucket refills: after a pause, events pass again.
    time.advance(450);
    expect((await request<SubscriptionAck>(socket, 'unsubscribe', ['j'])).ok).toBe(true);

    // A client that keeps flooding is disconnected.
    const gone = disconnected(socket);
    for (let i = 0; i < 60; i++) socket.emit('unsubscribe', ['j']);
    expect(await gone).toBe('io server disconnect');
    expect(errors.at(-1)).toEqual({ code: 'RATE_LIMITED', message: expect.stringMatching(/disconnected/) });
    const text = await metricsOf(limited);
    expect(metricValue(text, 'dubgate_realtime_events_refused_total', { reason: 'rate_limited' })).toBeGreaterThanOrEqual(40);
    await stillServes(limited);
  });

  it('the rate limit also covers unauthenticated sockets', async () => {
    // A clock that stands still: no refill between the events, so 18 of the 20 are refused.
    const limited = await env.startNode(
      { REALTIME_EVENTS_PER_SECOND: '1', REALTIME_EVENT_BURST: '2', REALTIME_RATE_LIMIT_DISCONNECT: '10' },
      undefined,
      { now: manualClock(1_000_000).read },
    );
    const socket = env.connect(limited.url);
    await connected(socket);
    const gone = disconnected(socket);
    for (let i = 0; i < 20; i++) socket.emit('authenticate', 'garbage-token');
    expect(await gone).toBe('io server disconnect');
  });
});
