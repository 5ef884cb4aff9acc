import { afterEach, describe, expect, it } from 'vitest';
import { createAuthRepository } from '@dubgate/db/auth';
import { createHarness, WAIT_MS, waitFor, type Harness } from './helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('maintenance', () => {
  it('the leader purges expired sessions and merges the search index', async () => {
    h = await createHarness('maint');
    const auth = createAuthRepository(h.db);
    const user = auth.createUser({ username: `maint-${Date.now()}`, passwordHash: 'x', role: 'user' });
    if (!user.ok) throw new Error('user not created');
    const old = auth.createSession({ id: 'expired-session', userId: user.user.id, csrfToken: 'c', expiresAt: new Date(Date.now() - 2 * 24 * 3600_000) });
    const fresh = auth.createSession({ id: 'fresh-session', userId: user.user.id, csrfToken: 'c', expiresAt: new Date(Date.now() + 3600_000) });
    // Jobs inserted one per transaction leave small segments for the merge to fold together.
    for (let i = 0; i < 20; i++) await h.createJob();

    const s = h.scheduler({ maintenanceIntervalMs: 200 });
    s.scheduler.start();
    await waitFor(() => s.log.lines.some((l) => l.msg === 'maintenance pass'), WAIT_MS, 'a maintenance pass');
    expect(auth.getSession(old.id)).toBeNull();
    expect(auth.getSession(fresh.id)).not.toBeNull();
    const pass = s.log.lines.find((l) => l.msg === 'maintenance pass')?.obj as { sessionsPurged: number; merges: number };
    expect(pass.sessionsPurged).toBe(1);
    expect(pass.merges).toBeGreaterThan(0);
  });
});
