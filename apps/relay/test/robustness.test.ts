import { afterEach, describe, expect, it } from 'vitest';
import { rooms } from '@dubgate/contracts/ws';
import { ALL_EVENT_CHANNELS, MAX_EVENT_MESSAGE_BYTES } from '@dubgate/contracts/events';
import { WAIT_MS, createHarness, iso, logMsg, progressMsg, sleep, usePrivateRedis, waitFor, type Harness } from './helpers.js';

// Counts every message the relay receives: other test runs must not publish on the same Redis.
usePrivateRedis();

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Bad inputs for a channel, each with the refusal reason the relay must count. */
function badMessages(jobId: string, channel: string): Array<[string | Buffer, 'invalid_json' | 'schema' | 'too_large']> {
  const ts = iso();
  const valid: Record<string, object> = {
    'events:progress': { jobId, type: 'progress', timestamp: ts, payload: { stage: 'download', percent: 1 } },
    'events:log': { jobId, type: 'log', timestamp: ts, payload: { level: 'info', message: 'x' } },
    'events:error': { jobId, type: 'error', timestamp: ts, payload: { code: 'E', message: 'x' } },
    'events:state': { jobId, type: 'job_removed', timestamp: ts, payload: { ownerId: 'u' } },
    'events:notification': { jobId: 'system', type: 'notification', timestamp: ts, payload: { type: 't', title: 't', message: 'm', severity: 'info' } },
  };
  const base = valid[channel]!;
  const nestedArrays = '['.repeat(30_000) + ']'.repeat(30_000);
  let nestedObject = '1';
  for (let i = 0; i < 5_000; i++) nestedObject = `{"a":${nestedObject}}`;
  return [
    ['', 'invalid_json'],
    ['not json at all', 'invalid_json'],
    ['{"jobId":', 'invalid_json'],
    [Buffer.from([0xff, 0xfe, 0x00, 0x81, 0x7b]), 'invalid_json'],
    ['null', 'schema'],
    ['42', 'schema'],
    ['"a string"', 'schema'],
    ['[]', 'schema'],
    ['{}', 'schema'],
    [nestedArrays, 'schema'],
    [JSON.stringify({ ...base, payload: 0 }).replace('"payload":0', `"payload":${nestedObject}`), 'schema'],
    [`{"jobId":"${jobId}","type":"log","nested":${nestedObject}}`, 'schema'],
    [JSON.stringify({ ...base, type: 'totally_unknown' }), 'schema'],
    [JSON.stringify({ ...base, extra: true }), 'schema'],
    [JSON.stringify({ ...base, jobId: '../../etc/passwd' }), 'schema'],
    [JSON.stringify({ ...base, timestamp: 'yesterday' }), 'schema'],
    [JSON.stringify({ ...base, payload: 'not an object' }), 'schema'],
    // Prototype pollution attempts: JSON.parse makes "__proto__" an own key; the schemas refuse it.
    [JSON.stringify(base).replace(/^\{/, '{"__proto__":{"polluted":"yes"},'), 'schema'],
    [JSON.stringify(base).replace(/"payload":\{/, '"payload":{"__proto__":{"polluted":"yes"},'), 'schema'],
    [JSON.stringify({ ...base, constructor: { prototype: { polluted: 'yes' } } }), 'schema'],
    [JSON.stringify({ ...base, padding: 'x'.repeat(MAX_EVENT_MESSAGE_BYTES) }), 'too_large'],
    ['x'.repeat(MAX_EVENT_MESSAGE_BYTES + 1), 'too_large'],
  ];
}

describe('relay: hostile input on every channel', () => {
  it('survives and counts malformed, oversized, deeply nested, prototype-polluting and unknown-type messages, then keeps working', async () => {
    h = await createHarness({ flushIntervalMs: 50 });
    const owner = h.createUser();
    const { job } = h.createJob(owner);
    const c = await h.node.client([rooms.job(job.id), rooms.admins, rooms.user(owner)]);

    const expected = new Map<string, number>();
    let total = 0;
    for (const channel of ALL_EVENT_CHANNELS) {
      for (const [text, reason] of badMessages(job.id, channel)) {
        await h.publishRaw(channel, text);
        const k = `${channel}|${reason}`;
        expected.set(k, (expected.get(k) ?? 0) + 1);
        total++;
      }
    }
    // Channel-specific nonsense: a valid message of another channel, values out of range.
    const extra: Array<[string, object]> = [
      ['events:progress', logMsg(job.id, 'a log on the progress channel')],
      ['events:progress', progressMsg(job.id, 101)],
      ['events:progress', { ...progressMsg(job.id, 5), payload: { stage: 'teleport', percent: 5 } }],
      ['events:log', { ...logMsg(job.id, 'x'), payload: { level: 'shout', message: 'x' } }],
      ['events:log', { ...logMsg(job.id, 'x'), payload: { level: 'info', message: 'y'.repeat(4001) } }],
      ['events:state', { jobId: job.id, type: 'state_change', timestamp: iso(), payload: { from: 'QUEUED', to: 'EXPLODED', ownerId: owner, eventId: 1 } }],
      ['events:state', { jobId: job.id, type: 'state_change', timestamp: iso(), payload: { from: null, to: 'QUEUED', ownerId: owner, eventId: 0 } }],
      ['events:notification', { jobId: 'system', type: 'notification', timestamp: iso(), payload: { type: 't', title: 't', message: 'm', severity: 'fatal' } }],
      [
        'events:notification',
        { jobId: 'system', type: 'notification', timestamp: iso(), payload: { type: 't', title: 't', message: 'm', severity: 'info', userIds: 'everyone' } },
      ],
    ];
    for (const [channel, msg] of extra) {
      await h.publishRaw(channel, JSON.stringify(msg));
      const k = `${channel}|schema`;
      expected.set(k, (expected.get(k) ?? 0) + 1);
      total++;
    }
    // Channels the relay does not listen on reach nothing.
    await h.publishRaw('events:unknown', JSON.stringify(logMsg(job.id, 'nobody listens')));
    await h.publishRaw('events:*', 'x');

    await waitFor(async () => (await h!.metricValue('dubgate_relay_messages_refused_total')) === total, WAIT_MS, 'all refusals counted');
    for (const [k, n] of expected) {
      const [channel, reason] = k.split('|') as [string, string];
      expect(await h.metricValue('dubgate_relay_messages_refused_total', { channel, reason }), k).toBe(n);
    }
    expect(await h.metricValue('dubgate_relay_messages_total')).toBe(total);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();

    // Nothing was delivered or stored (proving non-deliveries: nothing to wait for)...
    await sleep(150);
    expect(c.received).toEqual([]);
    expect(h.events.listEvents(job.id, { limit: 10 }).items.map((e) => e.type)).toEqual(['created']);

    // ...and the relay still works.
    await h.publish('events:log', logMsg(job.id, 'still alive'));
    await h.publish('events:progress', progressMsg(job.id, 42));
    await c.waitFor((r) => r.length === 2, 'valid messages delivered after the garbage');
    expect(c.of('log')[0]).toMatchObject({ message: 'still alive', eventId: expect.any(Number) });
    expect(c.of('progress')[0]).toMatchObject({ percent: 42 });
  });
});
