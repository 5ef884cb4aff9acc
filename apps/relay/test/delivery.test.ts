import { afterEach, describe, expect, it } from 'vitest';
import { Value } from '@sinclair/typebox/value';
import '@dubgate/queues/validation'; // registers the date-time format the ws schemas use
import {
  WsErrorSchema,
  WsJobAddedSchema,
  WsJobRemovedSchema,
  WsLogSchema,
  WsNotificationSchema,
  WsProgressSchema,
  WsStateChangeSchema,
  rooms,
} from '@dubgate/contracts/ws';
import { createHarness, errorMsg, iso, logMsg, progressMsg, sleep, type Harness, usePrivateRedis } from './helpers.js';

// The relay listens on global Pub/Sub channels: other packages' tests must not reach it.
usePrivateRedis();

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('relay: each channel reaches the right room as the right event', () => {
  it('delivers progress, state_change, log, error, job_added, job_removed and notification with their fields', async () => {
    h = await createHarness({ flushIntervalMs: 50 });
    const alice = h.createUser('user');
    const bob = h.createUser('user');
    const { job, eventId: createdEventId } = h.createJob(alice);
    const other = h.createJob(bob).job;

    const jobRoom = await h.node.client([rooms.job(job.id)]);
    const aliceRoom = await h.node.client([rooms.user(alice)]);
    const bobRoom = await h.node.client([rooms.user(bob)]);
    const admins = await h.node.client([rooms.admins]);
    const otherJobRoom = await h.node.client([rooms.job(other.id)]);

    // job_added → owner's room and admins.
    await h.publish('events:state', {
      jobId: job.id,
      type: 'job_added',
      timestamp: iso(),
      payload: { url: job.url, status: 'QUEUED', ownerId: alice, eventId: createdEventId },
    });
    await aliceRoom.waitFor((r) => r.some((x) => x.event === 'job_added'), 'job_added to owner');
    await admins.waitFor((r) => r.some((x) => x.event === 'job_added'), 'job_added to admins');
    expect(aliceRoom.of('job_added')).toEqual([{ jobId: job.id, url: job.url, status: 'QUEUED', eventId: createdEventId }]);
    expect(Value.Check(WsJobAddedSchema, aliceRoom.of('job_added')[0])).toBe(true);

    // state_change → job room, with the stored eventId.
    const sc = h.transition(job.id, 'QUEUED', 'DOWNLOADING', 'download started');
    await h.publish('events:state', sc);
    await jobRoom.waitFor((r) => r.some((x) => x.event === 'state_change'), 'state_change');
    const stateEvent = jobRoom.of('state_change')[0];
    expect(stateEvent).toEqual({
      jobId: job.id,
      from: 'QUEUED',
      to: 'DOWNLOADING',
      timestamp: sc.timestamp,
      eventId: (sc.payload as { eventId: number }).eventId,
      reason: 'download started',
    });
    expect(Value.Check(WsStateChangeSchema, stateEvent)).toBe(true);
    // ...and to the owner's room and admins (once per socket), never to another user.
    await aliceRoom.waitFor((r) => r.some((x) => x.event === 'state_change'), 'state_change to owner');
    await admins.waitFor((r) => r.some((x) => x.event === 'state_change'), 'state_change to admins');
    expect(aliceRoom.of('state_change')).toEqual([stateEvent]);

    // progress → job room, renamed as the seed names the fields.
    const p1 = progressMsg(job.id, 12.5, { speed: 1_000_000, eta: 42, step: 'fragment 3/24', seq: 7 });
    await h.publish('events:progress', p1);
    await jobRoom.waitFor((r) => r.some((x) => x.event === 'progress'), 'progress');
    expect(jobRoom.of('progress')[0]).toEqual({
      jobId: job.id,
      type: 'download',
      percent: 12.5,
      speed: 1_000_000,
      eta: 42,
      stage: 'fragment 3/24',
      seq: 7,
      timestamp: p1.timestamp,
    });
    expect(Value.Check(WsProgressSchema, jobRoom.of('progress')[0])).toBe(true);
    await sleep(300); // past the rate limit's gap
    await h.publish('events:progress', progressMsg(job.id, 20));
    await jobRoom.waitFor((r) => r.filter((x) => x.event === 'progress').length === 2, 'second progress');
    expect(jobRoom.of('progress')[1]).toMatchObject({ percent: 20, speed: null, eta: null, stage: null });
    expect(jobRoom.of('progress')[1]).not.toHaveProperty('seq');

    // log and error → job room, each with the id of its job_events row.
    const lm = logMsg(job.id, 'hello from the worker', 'warn');
    await h.publish('events:log', lm);
    const em = errorMsg(job.id, 'NETWORK_ERROR', 'connection reset');
    await h.publish('events:error', em);
    await jobRoom.waitFor((r) => r.some((x) => x.event === 'error'), 'error event');
    const logEvent = jobRoom.of('log')[0];
    const errorEvent = jobRoom.of('error')[0];
    expect(logEvent).toEqual({ jobId: job.id, level: 'warn', message: 'hello from the worker', timestamp: lm.timestamp, eventId: expect.any(Number) });
    expect(errorEvent).toEqual({ jobId: job.id, code: 'NETWORK_ERROR', message: 'connection reset', timestamp: em.timestamp, eventId: expect.any(Number) });
    expect(Value.Check(WsLogSchema, logEvent)).toBe(true);
    expect(Value.Check(WsErrorSchema, errorEvent)).toBe(true);
    const stored = h.events.listEvents(job.id, { limit: 100 }).items;
    const logRow = stored.find((e) => e.id === logEvent.eventId)!;
    const errorRow = stored.find((e) => e.id === errorEvent.eventId)!;
    expect(logRow).toMatchObject({ type: 'log', level: 'warn', message: 'hello from the worker', payload: { stage: 'download' } });
    expect(errorRow).toMatchObject({
      type: 'error',
      level: 'error',
      message: 'connection reset',
      payload: { code: 'NETWORK_ERROR', stage: 'download', permanent: false },
    });
    expect(logRow.createdAt).toBe(new Date(lm.timestamp).toISOString());

    // notification to named users, then to admins only, then a system one without jobId.
    await h.publish('events:notification', {
      jobId: job.id,
      type: 'notification',
      timestamp: iso(),
      payload: { type: 'job_held', title: 'Waiting for disk', message: 'download held', severity: 'warning', userIds: [alice] },
    });
    await h.publish('events:notification', {
      jobId: 'system',
      type: 'notification',
      timestamp: iso(),
      payload: { type: 'disk_space_low', title: 'Disk almost full', message: '1 GiB left', severity: 'error' },
    });
    await aliceRoom.waitFor((r) => r.some((x) => x.event === 'notification'), 'notification to alice');
    await admins.waitFor((r) => r.some((x) => x.event === 'notification'), 'notification to admins');
    expect(aliceRoom.of('notification')).toEqual([
      { type: 'job_held', title: 'Waiting for disk', message: 'download held', severity: 'warning', jobId: job.id, timestamp: expect.any(String) },
    ]);
    expect(admins.of('notification')).toEqual([
      { type: 'disk_space_low', title: 'Disk almost full', message: '1 GiB left', severity: 'error', timestamp: expect.any(String) },
    ]);
    expect(Value.Check(WsNotificationSchema, admins.of('notification')[0])).toBe(true);

    // job_removed → owner's room and admins.
    await h.publish('events:state', { jobId: job.id, type: 'job_removed', timestamp: iso(), payload: { ownerId: alice } });
    await aliceRoom.waitFor((r) => r.some((x) => x.event === 'job_removed'), 'job_removed to owner');
    await admins.waitFor((r) => r.some((x) => x.event === 'job_removed'), 'job_removed to admins');
    expect(aliceRoom.of('job_removed')).toEqual([{ jobId: job.id }]);
    expect(Value.Check(WsJobRemovedSchema, aliceRoom.of('job_removed')[0])).toBe(true);

    // Nobody else heard any of it (proving non-deliveries: nothing to wait for).
    await sleep(200);
    expect(bobRoom.received).toEqual([]);
    expect(otherJobRoom.received).toEqual([]);
    expect(jobRoom.of('job_added')).toEqual([]);
    expect(jobRoom.of('notification')).toEqual([]);
    expect(aliceRoom.of('progress')).toEqual([]);
    expect(aliceRoom.of('notification')).toHaveLength(1); // not the admins-only one

    expect(await h.metricValue('dubgate_relay_events_emitted_total', { event: 'log' })).toBe(1);
    expect(await h.metricValue('dubgate_relay_events_emitted_total', { event: 'job_added' })).toBe(1);
    expect(await h.metricValue('dubgate_relay_messages_total', { channel: 'events:state' })).toBe(3);
    // Every message's lag from its timestamp, by channel: here all fresh.
    expect(await h.metricValue('dubgate_relay_event_lag_seconds', { channel: 'events:state' }, '_count')).toBe(3);
    expect(await h.metricValue('dubgate_relay_event_lag_seconds', { channel: 'events:state' }, '_sum')).toBeLessThan(3);
  });

  it('sends job_added and notifications only to the rooms of the users who may see them', async () => {
    h = await createHarness({ flushIntervalMs: 50 });
    const alice = h.createUser();
    const bob = h.createUser();
    const carol = h.createUser();
    const a = h.createJob(alice);
    const aliceRoom = await h.node.client([rooms.user(alice)]);
    const bobRoom = await h.node.client([rooms.user(bob)]);
    const carolRoom = await h.node.client([rooms.user(carol)]);
    const admins = await h.node.client([rooms.admins]);

    await h.publish('events:state', {
      jobId: a.job.id,
      type: 'job_added',
      timestamp: iso(),
      payload: { url: a.job.url, status: 'QUEUED', ownerId: alice, eventId: a.eventId },
    });
    await h.publish('events:notification', {
      jobId: a.job.id,
      type: 'notification',
      timestamp: iso(),
      payload: { type: 'shared', title: 't', message: 'm', severity: 'info', userIds: [alice, carol, carol] },
    });
    // An empty recipient list reaches nobody (never "everyone").
    await h.publish('events:notification', {
      jobId: 'system',
      type: 'notification',
      timestamp: iso(),
      payload: { type: 'nobody', title: 't', message: 'm', severity: 'info', userIds: [] },
    });
    await carolRoom.waitFor((r) => r.some((x) => x.event === 'notification'), 'notification to carol');
    await aliceRoom.waitFor((r) => r.length === 2, 'alice got job_added and notification');
    await admins.waitFor((r) => r.some((x) => x.event === 'job_added'), 'admins got job_added');
    await sleep(200); // proves non-deliveries: nothing to wait for

    expect(aliceRoom.received.map((r) => r.event)).toEqual(['job_added', 'notification']);
    expect(carolRoom.received.map((r) => r.event)).toEqual(['notification']);
    expect(bobRoom.received).toEqual([]);
    expect(admins.received.map((r) => r.event)).toEqual(['job_added']);
    expect(await h.metricValue('dubgate_relay_messages_dropped_total', { reason: 'no_recipients' })).toBe(1);
  });

  it("keeps one job's events in the order received, and sends held progress before a terminal state", async () => {
    // One progress update per 1000 s gets through: a held update stays held until the COMPLETE (or
    // stop()) sends it, however slowly the messages arrive (at 2/s, a slow machine's timer could
    // send 20 before 30 came).
    h = await createHarness({ flushIntervalMs: 100, progressPerSecond: 0.001 });
    const alice = h.createUser();
    const { job } = h.createJob(alice);
    const c = await h.node.client([rooms.job(job.id)]);

    // log, state, log, state: the state changes must wait behind the logs' writes.
    const s1 = h.transition(job.id, 'QUEUED', 'DOWNLOADING');
    await h.publish('events:log', logMsg(job.id, 'first'));
    await h.publish('events:state', s1);
    await h.publish('events:log', logMsg(job.id, 'second'));
    const s2 = h.transition(job.id, 'DOWNLOADING', 'DOWNLOADED');
    await h.publish('events:state', s2);
    const s3 = h.transition(job.id, 'DOWNLOADED', 'MUXING');
    await h.publish('events:state', s3);

    // Progress 10 goes at once; 20 and 30 are held (30 replaces 20); COMPLETE sends 30 first.
    await h.publish('events:progress', progressMsg(job.id, 10, { stage: 'mux' }));
    await h.publish('events:progress', progressMsg(job.id, 20, { stage: 'mux' }));
    await h.publish('events:progress', progressMsg(job.id, 30, { stage: 'mux' }));
    const s4 = h.transition(job.id, 'MUXING', 'COMPLETE');
    await h.publish('events:state', s4);

    await c.waitFor((r) => r.some((x) => x.event === 'state_change' && x.data.to === 'COMPLETE'), 'COMPLETE');
    // Nothing more comes (the held update was already sent): stop() sends whatever is still held,
    // and a marker emitted after it arrives last, so everything sent before it is here.
    await h.relay.stop();
    h.relay.emitter.emit([rooms.job(job.id)], 'job_removed', { jobId: job.id });
    await c.waitFor((r) => r.some((x) => x.event === 'job_removed'), 'the marker sent after stop()');
    expect(c.received.at(-1)).toEqual({ event: 'job_removed', data: { jobId: job.id } });
    const seq = c.received.slice(0, -1).map((r) =>
      r.event === 'log' ? `log:${r.data.message}` : r.event === 'state_change' ? `state:${r.data.to}` : `${r.event}:${r.data.percent}`,
    );
    expect(seq).toEqual([
      'log:first',
      'state:DOWNLOADING',
      'log:second',
      'state:DOWNLOADED',
      'state:MUXING',
      'progress:10',
      'progress:30',
      'state:COMPLETE',
    ]);
    expect(await h.metricValue('dubgate_relay_progress_coalesced_total')).toBe(1);
  });
});
