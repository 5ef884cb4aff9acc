import { describe, expect, it } from 'vitest';
import {
  QUEUE_PREFIX,
  STAGE_QUEUES,
  gatewayKeys,
  jobOwnerKey,
  parseStageJobId,
  revokedSessionKey,
  schedulerLockKey,
  stageJobId,
  stageQueueKeyPrefix,
} from '../src/names.js';

describe('names', () => {
  it('maps the seed queues q:download, q:dub, q:mux to prefix q and colon-free queue names', () => {
    expect(QUEUE_PREFIX).toBe('q');
    expect(STAGE_QUEUES).toEqual({ download: 'download', dub: 'dub', mux: 'mux' });
    for (const name of Object.values(STAGE_QUEUES)) expect(name).not.toContain(':');
    expect(stageQueueKeyPrefix('download')).toBe('q:download:');
    expect(stageQueueKeyPrefix('mux', 'q-test')).toBe('q-test:mux:');
  });

  it('re-exports deterministic stage job ids that round-trip', () => {
    const id = stageJobId('abc-123', 'dub', 4);
    expect(id).toBe('abc-123_dub_g4');
    expect(id).not.toContain(':');
    expect(parseStageJobId(id)).toEqual({ jobId: 'abc-123', stage: 'dub', generation: 4 });
    expect(parseStageJobId('42')).toBeNull();
  });

  it('keeps our own keys under gw: by default and under any prefix for tests', () => {
    expect(jobOwnerKey('j1')).toBe('gw:job-owner:j1');
    expect(revokedSessionKey('s1')).toBe('gw:session-revoked:s1');
    expect(schedulerLockKey).toBe('gw:scheduler:lock');
    const k = gatewayKeys('gw-test-1');
    expect(k.jobOwnerKey('j1')).toBe('gw-test-1:job-owner:j1');
    expect(k.revokedSessionKey('s1')).toBe('gw-test-1:session-revoked:s1');
    expect(k.schedulerLockKey).toBe('gw-test-1:scheduler:lock');
  });

  it('refuses empty ids and prefixes that would address shared keys', () => {
    expect(() => jobOwnerKey('')).toThrow();
    expect(() => revokedSessionKey('')).toThrow();
    expect(() => gatewayKeys('')).toThrow();
    expect(() => gatewayKeys('gw:')).toThrow();
  });
});
