import { describe, expect, it } from 'vitest';
import { createAuthRepository } from '../src/auth-repository.js';
import { manualClock, testDb } from './helpers.js';

function setup() {
  const { db } = testDb();
  const time = manualClock();
  return { db, time, auth: createAuthRepository(db, { clock: time.clock, touchIntervalMs: 60_000 }) };
}

describe('auth repository: users', () => {
  it('creates, finds (case-insensitively), lists, disables and counts users', () => {
    const { auth } = setup();
    expect(auth.countUsers()).toBe(0);
    const admin = auth.createUser({ username: 'Admin', passwordHash: 'h1', role: 'admin' });
    if (!admin.ok) throw new Error('create failed');
    expect(admin.user).toEqual({ id: admin.user.id, username: 'Admin', role: 'admin', disabled: false, createdAt: '2025-01-01T00:00:00.000Z' });
    expect(auth.createUser({ username: 'admin', passwordHash: 'h2', role: 'user' })).toEqual({ ok: false, reason: 'username_taken' });
    const bob = auth.createUser({ id: 'bob-id', username: 'bob', passwordHash: 'h3', role: 'user' });
    expect(bob.ok && bob.user.id).toBe('bob-id');

    expect(auth.findUserByUsername('ADMIN')).toMatchObject({ id: admin.user.id, passwordHash: 'h1' });
    expect(auth.findUserByUsername('nobody')).toBeNull();
    expect(auth.findUserById('bob-id')).toMatchObject({ username: 'bob', passwordHash: 'h3' });
    expect(auth.findUserById('nobody')).toBeNull();
    expect(auth.listUsers().map((u) => u.username)).toEqual(['Admin', 'bob']);
    expect(auth.listUsers()[0]).not.toHaveProperty('passwordHash');
    expect(auth.countUsers()).toBe(2);
    expect(auth.countActiveAdmins()).toBe(1);

    expect(auth.setUserDisabled(admin.user.id, true)).toBe(true);
    expect(auth.findUserById(admin.user.id)!.disabled).toBe(true);
    expect(auth.countActiveAdmins()).toBe(0);
    expect(auth.setUserDisabled('nobody', true)).toBe(false);
    expect(auth.setPasswordHash('bob-id', 'h4')).toBe(true);
    expect(auth.findUserById('bob-id')!.passwordHash).toBe('h4');
  });
});

describe('auth repository: sessions', () => {
  it('creates, reads, revokes one or all of a user', () => {
    const { auth, time } = setup();
    const u = auth.createUser({ username: 'u', passwordHash: 'h', role: 'user' });
    if (!u.ok) throw new Error();
    const uid = u.user.id;
    const s1 = auth.createSession({ id: 's1', userId: uid, csrfToken: 'c1', expiresAt: '2025-01-02T00:00:00Z' });
    expect(s1).toEqual({ id: 's1', userId: uid, csrfToken: 'c1', createdAt: '2025-01-01T00:00:00.000Z', expiresAt: '2025-01-02T00:00:00.000Z', revokedAt: null });
    auth.createSession({ id: 's2', userId: uid, csrfToken: 'c2', expiresAt: new Date('2025-01-03T00:00:00Z') });
    auth.createSession({ id: 's3', userId: uid, csrfToken: 'c3', expiresAt: '2025-01-03T00:00:00Z' });
    expect(auth.getSession('s1')).toEqual(s1);
    expect(auth.getActiveSession('s1')).toEqual(s1);
    expect(auth.getActiveSessionWithUser('s1')).toEqual({ session: s1, user: u.user });
    expect(auth.getSession('nope')).toBeNull();
    expect(auth.getActiveSessionWithUser('nope')).toBeNull();

    time.advance(1000);
    expect(auth.revokeSession('s1')).toBe(true);
    expect(auth.revokeSession('s1')).toBe(false);
    expect(auth.getSession('s1')!.revokedAt).toBe('2025-01-01T00:00:01.000Z');
    expect(auth.getActiveSession('s1')).toBeNull();
    expect(auth.getActiveSessionWithUser('s1')).toBeNull();
    expect(auth.revokeUserSessions(uid)).toBe(2);
    expect(auth.getActiveSession('s2')).toBeNull();

    auth.createSession({ id: 's4', userId: uid, csrfToken: 'c4', expiresAt: '2025-01-01T00:00:05Z' });
    expect(auth.getActiveSession('s4', '2025-01-01T00:00:05Z')).toBeNull(); // expired
    expect(auth.getActiveSessionWithUser('s4', '2025-01-01T00:00:05Z')).toBeNull();
    expect(auth.getActiveSessionWithUser('s4', '2025-01-01T00:00:04.999Z')?.session.id).toBe('s4');
    expect(auth.purgeExpiredSessions('2025-01-02T12:00:00Z')).toBe(2); // s1, s4
    expect(() => auth.createSession({ id: 's5', userId: 'nobody', csrfToken: 'c', expiresAt: '2026-01-01T00:00:00Z' })).toThrow(/FOREIGN KEY/);
  });
});

describe('auth repository: API tokens', () => {
  it('creates, finds by hash, lists, revokes only for the owner, touches with a throttle', () => {
    const { db, auth, time } = setup();
    const a = auth.createUser({ username: 'a', passwordHash: 'h', role: 'user' });
    const b = auth.createUser({ username: 'b', passwordHash: 'h', role: 'user' });
    if (!a.ok || !b.ok) throw new Error();
    const t1 = auth.createApiToken({ id: 't1', userId: a.user.id, name: 'cli', tokenHash: 'hash1', expiresAt: null });
    expect(t1).toEqual({ id: 't1', userId: a.user.id, name: 'cli', createdAt: '2025-01-01T00:00:00.000Z', lastUsedAt: null, expiresAt: null, revokedAt: null });
    auth.createApiToken({ id: 't2', userId: a.user.id, name: 'ci', tokenHash: 'hash2', expiresAt: '2026-01-01T00:00:00Z' });
    expect(() => auth.createApiToken({ id: 't3', userId: b.user.id, name: 'dup', tokenHash: 'hash1', expiresAt: null })).toThrow(/UNIQUE/);

    expect(auth.findApiTokenByHash('hash2')).toMatchObject({ id: 't2', expiresAt: '2026-01-01T00:00:00.000Z' });
    expect(auth.findApiTokenByHash('nope')).toBeNull();
    expect(auth.listApiTokens(a.user.id).map((t) => t.id)).toEqual(['t1', 't2']);
    expect(auth.listApiTokens(a.user.id)[0]).toEqual({ id: 't1', name: 'cli', createdAt: '2025-01-01T00:00:00.000Z', lastUsedAt: null, expiresAt: null });
    expect(auth.listApiTokens(b.user.id)).toEqual([]);

    expect(auth.revokeApiToken('t1', b.user.id)).toBe(false); // not b's
    expect(auth.revokeApiToken('t1', a.user.id)).toBe(true);
    expect(auth.revokeApiToken('t1', a.user.id)).toBe(false);
    expect(auth.findApiTokenByHash('hash1')!.revokedAt).toBe('2025-01-01T00:00:00.000Z');
    expect(auth.listApiTokens(a.user.id).map((t) => t.id)).toEqual(['t2']);

    expect(auth.touchApiToken('t2')).toBe(true);
    time.advance(30_000);
    expect(auth.touchApiToken('t2')).toBe(false); // within the interval: no write
    time.advance(31_000);
    expect(auth.touchApiToken('t2')).toBe(true);
    expect(auth.findApiTokenByHash('hash2')!.lastUsedAt).toBe('2025-01-01T00:01:01.000Z');

    // Deleting a user takes their sessions and tokens along.
    db.prepare('DELETE FROM users WHERE id = ?').run(a.user.id);
    expect(auth.findApiTokenByHash('hash2')).toBeNull();
  });
});
