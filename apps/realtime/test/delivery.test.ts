// subscribe/unsubscribe with authorization from Redis, and delivery of what the relay emits
// (through @socket.io/redis-emitter) to the rooms of jobs and users, on one node and on several.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import {
  MAX_SUBSCRIBE_IDS,
  SubscriptionAckSchema,
  WsErrorSchema,
  WsJobAddedSchema,
  WsJobRemovedSchema,
  WsLogSchema,
  WsNotificationSchema,
  WsProgressSchema,
  WsStateChangeSchema,
  rooms,
  type ServerToClientEvents,
  type SubscriptionAck,
  type WsError,
} from '@dubgate/contracts/ws';
import {
  connected,
  createTestEnv,
  makeUser,
  metricValue,
  metricsOf,
  nextEvent,
  rand,
  record,
  request,
  sleep,
  WAIT_MS,
  waitFor,
  type Client,
  type TestEnv,
  type TestNode,
  type TestUser,
} from './helpers.js';

if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', (v) => !Number.isNaN(Date.parse(v)));

let env: TestEnv;
let node: TestNode;

beforeEach(async () => {
  env = createTestEnv('delivery');
  node = await env.startNode();
});
afterEach(async () => {
  await env.cleanup();
});

async function login(n: TestNode, user: TestUser): Promise<Client> {
  const socket = env.connect(n.url, { auth: { token: user.token } });
  await connected(socket);
  return socket;
}

const subscribe = (socket: Client, ids: unknown) => request<SubscriptionAck>(socket, 'subscribe', ids);

/** One sample of every server event of the seed, for job `jobId`, each valid against its contract schema. */
function samples(jobId: string): Array<{ event: keyof ServerToClientEvents; payload: Record<string, unknown>; schema: TSchema }> {
  const ts = new Date().toISOString();
  return [
    { event: 'progress', payload: { jobId, type: 'download', percent: 42.5, speed: 1_048_576, eta: 12, stage: 'fragment 3/9', seq: 7, timestamp: ts }, schema: WsProgressSchema },
    { event: 'state_change', payload: { jobId, from: 'QUEUED', to: 'DOWNLOADING', timestamp: ts, eventId: 11 }, schema: WsStateChangeSchema },
    { event: 'log', payload: { jobId, level: 'info', message: 'downloading https://videos.example.com/v', timestamp: ts, eventId: 12 }, schema: WsLogSchema },
    { event: 'notification', payload: { type: 'job_complete', title: 'Done', message: 'Your video is ready', severity: 'info', jobId }, schema: WsNotificationSchema },
    { event: 'job_added', payload: { jobId, url: 'https://videos.example.com/v', status: 'QUEUED', eventId: 10 }, schema: WsJobAddedSchema },
    { event: 'job_removed', payload: { jobId }, schema: WsJobRemovedSchema },
    { event: 'error', payload: { jobId, code: 'STAGE_FAILED', message: 'download failed: HTTP 404', eventId: 13, timestamp: ts }, schema: WsErrorSchema },
  ];
}

describe('subscribe', () => {
  it("accepts the user's own jobs, refuses others' and unknown ones with JOB_NOT_FOUND, in one acknowledgement", async () => {
    const alice = makeUser();
    const bob = makeUser();
    await env.setOwner('a-1', alice.id);
    await env.setOwner('a-2', alice.id);
    await env.setOwner('b-1', bob.id);
    const socket = await login(node, alice);

    const ack = await subscribe(socket, ['a-1', 'b-1', 'nope', 'a-2', 'a-1']);
    expect(TypeCompiler.Compile(SubscriptionAckSchema).Check(ack)).toBe(true);
    expect(ack).toEqual({
      ok: true,
      results: [
        { jobId: 'a-1', accepted: true },
        { jobId: 'b-1', accepted: false, code: 'JOB_NOT_FOUND' },
        { jobId: 'nope', accepted: false, code: 'JOB_NOT_FOUND' },
        { jobId: 'a-2', accepted: true },
      ],
    });
    const [remote] = await node.server.io.in(rooms.user(alice.id)).fetchSockets();
    expect([...remote!.rooms].sort()).toEqual([socket.id, rooms.job('a-1'), rooms.job('a-2'), rooms.user(alice.id)].sort());
    // Subscribing again is idempotent.
    expect(await subscribe(socket, ['a-1'])).toEqual({ ok: true, results: [{ jobId: 'a-1', accepted: true }] });
    expect(metricValue(await metricsOf(node), 'dubgate_realtime_events_refused_total', { reason: 'job_not_found' })).toBe(2);
  });

  it('a client of another user cannot subscribe and receives none of the job’s events', async () => {
    const owner = makeUser();
    const mallory = makeUser();
    const jobId = `j-${rand()}`;
    await env.setOwner(jobId, owner.id);
    const mine = await login(node, owner);
    const theirs = await login(node, mallory);
    expect(await subscribe(mine, [jobId])).toEqual({ ok: true, results: [{ jobId, accepted: true }] });
    expect(await subscribe(theirs, [jobId])).toEqual({ ok: true, results: [{ jobId, accepted: false, code: 'JOB_NOT_FOUND' }] });

    const seenByMallory = record(theirs);
    const seenByOwner = record(mine);
    for (const { event, payload } of samples(jobId)) env.emitter.to(rooms.job(jobId)).emit(event, payload as never);
    await waitFor(() => seenByOwner.length === 7, WAIT_MS, 'the owner got all 7 events');
    await sleep(100); // proves a non-delivery: nothing to wait for on the other socket
    expect(seenByMallory).toEqual([]);
  });

  it('without an acknowledgement, refusals arrive as error events naming the job', async () => {
    const user = makeUser();
    await env.setOwner('mine', user.id);
    const socket = await login(node, user);
    const errors: WsError[] = [];
    socket.on('error', (e) => errors.push(e));
    socket.emit('subscribe', ['mine', 'not-mine']);
    await waitFor(() => errors.length === 1);
    expect(errors).toEqual([{ jobId: 'not-mine', code: 'JOB_NOT_FOUND', message: expect.any(String) }]);
    env.emitter.to(rooms.job('mine')).emit('job_removed', { jobId: 'mine' });
    expect(await nextEvent(socket, 'job_removed')).toEqual({ jobId: 'mine' });
  });

  it('an admin may subscribe to any job that exists, but not to one that does not', async () => {
    const admin = makeUser('admin');
    const user = makeUser();
    await env.setOwner('users-job', user.id);
    const socket = await login(node, admin);
    expect(await subscribe(socket, ['users-job', 'ghost'])).toEqual({
      ok: true,
      results: [
        { jobId: 'users-job', accepted: true },
        { jobId: 'ghost', accepted: false, code: 'JOB_NOT_FOUND' },
      ],
    });
    env.emitter.to(rooms.job('users-job')).emit('state_change', { jobId: 'users-job', from: 'QUEUED', to: 'CANCELED', timestamp: new Date().toISOString() });
    expect(await nextEvent(socket, 'state_change')).toMatchObject({ jobId: 'users-job', to: 'CANCELED' });
  });

  it('caps subscriptions per socket with TOO_MANY_SUBSCRIPTIONS', async () => {
    const capped = await env.startNode({ REALTIME_MAX_SUBSCRIPTIONS: '3' });
    const user = makeUser();
    for (const id of ['c1', 'c2', 'c3', 'c4', 'c5']) await env.setOwner(id, user.id);
    const socket = await login(capped, user);
    expect(await subscribe(socket, ['c1', 'c2'])).toMatchObject({ ok: true });
    const ack = await subscribe(socket, ['c3', 'c4', 'c5', 'c1']);
    expect(ack.results).toEqual([
      { jobId: 'c3', accepted: true },
      { jobId: 'c4', accepted: false, code: 'TOO_MANY_SUBSCRIPTIONS' },
      { jobId: 'c5', accepted: false, code: 'TOO_MANY_SUBSCRIPTIONS' },
      { jobId: 'c1', accepted: true },
    ]);
    // Unsubscribing frees room for another.
    expect(await request<SubscriptionAck>(socket, 'unsubscribe', ['c1'])).toEqual({ ok: true, results: [{ jobId: 'c1', accepted: true }] });
    expect((await subscribe(socket, ['c4'])).results).toEqual([{ jobId: 'c4', accepted: true }]);
    expect(metricValue(await metricsOf(capped), 'dubgate_realtime_events_refused_total', { reason: 'too_many_subscriptions' })).toBe(2);
  });

  it(`takes at most ${MAX_SUBSCRIBE_IDS} ids of 1 to 64 characters`, async () => {
    const user = makeUser();
    const socket = await login(node, user);
    for (const bad of [[], Array.from({ length: MAX_SUBSCRIBE_IDS + 1 }, (_, i) => `j${i}`), ['x'.repeat(65)], [''], [1, 2], 'j1', { 0: 'j1' }, null]) {
      const ack = await subscribe(socket, bad);
      expect(ack).toEqual({ ok: false, results: [], error: { code: 'VALIDATION_FAILED', message: expect.stringMatching(/array of 1 to 100 job ids/) } });
    }
  });

  it('unsubscribe stops delivery of that job only', async () => {
    const user = makeUser();
    await env.setOwner('u1', user.id);
    await env.setOwner('u2', user.id);
    const socket = await login(node, user);
    await subscribe(socket, ['u1', 'u2']);
    expect(await request<SubscriptionAck>(socket, 'unsubscribe', ['u1', 'never-subscribed'])).toEqual({
      ok: true,
      results: [
        { jobId: 'u1', accepted: true },
        { jobId: 'never-subscribed', accepted: true },
      ],
    });
    const got = record(socket);
    env.emitter.to(rooms.job('u1')).emit('job_removed', { jobId: 'u1' });
    env.emitter.to(rooms.job('u2')).emit('job_removed', { jobId: 'u2' });
    // u1 was emitted before u2 to the same socket: once u2 is here, u1 would have been too.
    await waitFor(() => got.some((g) => (g.payload as { jobId?: string }).jobId === 'u2'));
    expect(got).toEqual([{ event: 'job_removed', payload: { jobId: 'u2' } }]);
  });
});

describe('delivery', () => {
  it('every server event of the seed, emitted to the job room, reaches a subscribed client with its fields; delivery and lag are measured', async () => {
    // The node's wall clock is the test's: the lag it measures does not depend on the machine's load.
    let reading = Date.now();
    const clocked = await env.startNode({}, undefined, { clock: () => reading });
    const user = makeUser();
    const jobId = `j-${rand()}`;
    await env.setOwner(jobId, user.id);
    const socket = await login(clocked, user);
    await subscribe(socket, [jobId]);
    const got = record(socket);

    const sent = samples(jobId);
    reading = Date.parse(sent[0]!.payload.timestamp as string) + 200; // delivered 0.2 s after the timestamp
    for (const { event, payload } of sent) env.emitter.to(rooms.job(jobId)).emit(event, payload as never);
    await waitFor(() => got.length === sent.length, WAIT_MS, 'all events delivered');
    expect(got.map((g) => g.event)).toEqual(sent.map((s) => s.event));
    sent.forEach(({ payload, schema }, i) => {
      expect(got[i]!.payload).toEqual(payload);
      expect(TypeCompiler.Compile(schema).Check(got[i]!.payload)).toBe(true);
    });

    const text = await metricsOf(clocked);
    for (const { event } of sent) expect(metricValue(text, 'dubgate_realtime_events_delivered_total', { event })).toBe(1);
    // progress, state_change, log and error carry a timestamp.
    expect(metricValue(text, 'dubgate_realtime_event_lag_seconds_count')).toBe(4);
    expect(metricValue(text, 'dubgate_realtime_event_lag_seconds_bucket', { le: '1' })).toBe(4);
  });

  it('counts each recipient and measures the lag from the payload timestamp', async () => {
    let reading = Date.now();
    const clocked = await env.startNode({}, undefined, { clock: () => reading });
    const user = makeUser();
    await env.setOwner('lagging', user.id);
    const sockets = await Promise.all([login(clocked, user), login(clocked, user), login(clocked, user)]);
    await Promise.all(sockets.map((s) => subscribe(s, ['lagging'])));
    const waits = sockets.map((s) => nextEvent(s, 'log'));
    const fiveSecondsAgo = new Date(Date.now() - 5_000).toISOString();
    reading = Date.parse(fiveSecondsAgo) + 5_000; // the node's clock: exactly 5 s late, however slow the delivery
    env.emitter.to(rooms.job('lagging')).emit('log', { jobId: 'lagging', level: 'warn', message: 'late', timestamp: fiveSecondsAgo });
    await Promise.all(waits);
    const text = await metricsOf(clocked);
    expect(metricValue(text, 'dubgate_realtime_events_delivered_total', { event: 'log' })).toBe(3);
    // Observed once per packet, about 5 s.
    expect(metricValue(text, 'dubgate_realtime_event_lag_seconds_count')).toBe(1);
    expect(metricValue(text, 'dubgate_realtime_event_lag_seconds_bucket', { le: '2.5' })).toBe(0);
    expect(metricValue(text, 'dubgate_realtime_event_lag_seconds_bucket', { le: '10' })).toBe(1);
  });

  it('job_added and notifications reach the user room; admins-room broadcasts reach admins only', async () => {
    const user = makeUser();
    const admin = makeUser('admin');
    const u = await login(node, user);
    const a = await login(node, admin);
    const seenByUser = record(u);
    env.emitter.to(rooms.user(user.id)).emit('job_added', { jobId: 'new', url: 'https://videos.example.com/n', status: 'QUEUED' });
    env.emitter.to(rooms.admins).emit('notification', { type: 'disk_low', title: 'Disk', message: 'Low disk space', severity: 'warning' });
    expect(await nextEvent(u, 'job_added')).toEqual({ jobId: 'new', url: 'https://videos.example.com/n', status: 'QUEUED' });
    expect(await nextEvent(a, 'notification')).toMatchObject({ type: 'disk_low' });
    await sleep(50); // proves a non-delivery to the user's socket: nothing to wait for
    expect(seenByUser.map((e) => e.event)).toEqual(['job_added']);
  });

  it('two nodes sharing Redis: a client on each, subscribed to the same job, both receive its events; others none', async () => {
    const second = await env.startNode();
    const user = makeUser();
    const stranger = makeUser();
    const jobId = `j-${rand()}`;
    await env.setOwner(jobId, user.id);
    const onFirst = await login(node, user);
    const onSecond = await login(second, user);
    const strangerOnSecond = await login(second, stranger);
    await subscribe(onFirst, [jobId]);
    await subscribe(onSecond, [jobId]);
    expect((await subscribe(strangerOnSecond, [jobId])).results[0]).toEqual({ jobId, accepted: false, code: 'JOB_NOT_FOUND' });
    const seenByStranger = record(strangerOnSecond);

    const a = record(onFirst);
    const b = record(onSecond);
    for (let seq = 0; seq < 20; seq++) {
      env.emitter.to(rooms.job(jobId)).emit('progress', { jobId, type: 'dub', percent: seq * 5, speed: null, eta: null, stage: `cue ${seq}/20`, seq });
    }
    await waitFor(() => a.length === 20 && b.length === 20, WAIT_MS, 'both clients got 20 events');
    await sleep(100); // proves no duplicate follows: nothing to wait for
    // In order, on both, each once: a node emits a fan-out batch to its own sockets only.
    expect(a.map((e) => (e.payload as { seq: number }).seq)).toEqual([...Array(20).keys()]);
    expect(b).toEqual(a);
    expect(seenByStranger).toEqual([]);
    expect(metricValue(await metricsOf(node), 'dubgate_realtime_events_delivered_total', { event: 'progress' })).toBe(20);
    expect(metricValue(await metricsOf(second), 'dubgate_realtime_events_delivered_total', { event: 'progress' })).toBe(20);
  });

  it('a batch of the relay, mixing events and rooms, is delivered in order to each room', async () => {
    const user = makeUser();
    const other = makeUser();
    const jobId = `j-${rand()}`;
    await env.setOwner(jobId, user.id);
    const socket = await login(node, user);
    const bystander = await login(node, other);
    await subscribe(socket, [jobId]);
    const got = record(socket);
    const seenByOther = record(bystander);
    const now = new Date().toISOString();
    // One turn of the event loop: one Redis message.
    env.emitter.to(rooms.job(jobId)).emit('progress', { jobId, type: 'download', percent: 10, speed: null, eta: null, stage: null, timestamp: now });
    env.emitter.to([rooms.job(jobId), rooms.user(user.id), rooms.admins]).emit('state_change', { jobId, from: 'DOWNLOADING', to: 'DOWNLOADED', timestamp: now, eventId: 7 });
    env.emitter.to(rooms.user(other.id)).emit('job_removed', { jobId: 'theirs' });
    env.emitter.to(rooms.job(jobId)).emit('log', { jobId, level: 'info', message: 'next', timestamp: now, eventId: 8 });
    await waitFor(() => got.length === 3 && seenByOther.length === 1, WAIT_MS, 'the batch delivered');
    await sleep(50); // proves no duplicate follows: nothing to wait for
    // The socket is in the job room and its user room: the state change arrives once.
    expect(got.map((e) => e.event)).toEqual(['progress', 'state_change', 'log']);
    expect(seenByOther).toEqual([{ event: 'job_removed', payload: { jobId: 'theirs' } }]);
  });

  it('broadcasts on the adapter channels (another node, another emitter) still reach the room', async () => {
    const user = makeUser();
    await env.setOwner('via-adapter', user.id);
    const socket = await login(node, user);
    await subscribe(socket, ['via-adapter']);
    env.adapterEmitter.to(rooms.job('via-adapter')).emit('job_removed', { jobId: 'via-adapter' });
    expect(await nextEvent(socket, 'job_removed')).toEqual({ jobId: 'via-adapter' });
    expect(metricValue(await metricsOf(node), 'dubgate_realtime_events_delivered_total', { event: 'job_removed' })).toBe(1);
  });

  it('refuses malformed fan-out messages whole, counts them, and keeps delivering', async () => {
    const user = makeUser();
    await env.setOwner('fan', user.id);
    const socket = await login(node, user);
    await subscribe(socket, ['fan']);
    const got = record(socket);
    const room = rooms.job('fan');
    const ok = { rooms: [room], event: 'job_removed', payload: { jobId: 'fan' } };
    const bad = [
      'not json',
      JSON.stringify({ v: 2, events: [ok] }),
      JSON.stringify({ v: 1, events: [] }),
      JSON.stringify({ v: 1, events: [{ ...ok, event: 'connect' }] }), // reserved, not a server event
      JSON.stringify({ v: 1, events: [{ ...ok, rooms: [] }] }), // empty rooms would mean everyone
      JSON.stringify({ v: 1, events: [ok, { ...ok, payload: 'text' }] }), // one bad event: the batch goes
      JSON.stringify({ v: 1, events: [{ ...ok, extra: true }] }),
      JSON.stringify({ v: 1, events: [ok], pad: 'x'.repeat(1024 * 1024) }),
    ];
    const before = metricValue(await metricsOf(node), 'dubgate_realtime_broadcasts_malformed_total');
    for (const message of bad) await env.redis.publish(env.fanoutChannel, message);
    await env.redis.publish(env.fanoutChannel, JSON.stringify({ v: 1, events: [ok] }));
    expect(await nextEvent(socket, 'job_removed')).toEqual({ jobId: 'fan' });
    await sleep(50); // proves no duplicate follows (the bad ones were published before): nothing to wait for
    expect(got).toEqual([{ event: 'job_removed', payload: { jobId: 'fan' } }]);
    expect(metricValue(await metricsOf(node), 'dubgate_realtime_broadcasts_malformed_total') - before).toBe(bad.length);
    expect(socket.connected).toBe(true);
  });

  it('a node ignores broadcasts on another adapter key prefix, and survives garbage on its own channel', async () => {
    const user = makeUser();
    await env.setOwner('iso', user.id);
    const socket = await login(node, user);
    await subscribe(socket, ['iso']);
    const got = record(socket);
    // Garbage where the adapter listens: not msgpack, msgpack of the wrong shape.
    await env.redis.publish(`${env.adapterKey}#/#`, 'not msgpack at all');
    await env.redis.publish(`${env.adapterKey}#/#${rooms.job('iso')}#`, Buffer.from([0xc1, 0xff, 0x00]));
    await env.redis.publish(`${env.adapterKey}#/#${rooms.job('iso')}#`, Buffer.from([0x93, 0xa1, 0x78, 0xc0, 0xc0]));
    env.emitter.to(rooms.job('iso')).emit('job_removed', { jobId: 'iso' });
    expect(await nextEvent(socket, 'job_removed')).toEqual({ jobId: 'iso' });
    expect(got).toEqual([{ event: 'job_removed', payload: { jobId: 'iso' } }]);
    expect(metricValue(await metricsOf(node), 'dubgate_realtime_broadcasts_malformed_total')).toBeGreaterThanOrEqual(1);
    expect(socket.connected).toBe(true);
  });
});
