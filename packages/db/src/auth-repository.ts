import type { Database } from 'better-sqlite3';
import type { ApiToken, Role, User } from '@dubgate/contracts/api';
import { systemClock, toIso, type Clock } from './time.js';
import { uuidv7 } from './uuid.js';

/** A user with the stored password hash, for login. Never send this to a client. */
export interface UserWithSecret extends User {
  passwordHash: string;
}

export interface SessionRecord {
  id: string;
  userId: string;
  csrfToken: string;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
}

export interface ApiTokenRecord extends ApiToken {
  userId: string;
  revokedAt: string | null;
}

export type CreateUserResult = { ok: true; user: User } | { ok: false; reason: 'username_taken' };

interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  role: string;
  disabled: number;
  created_at: string;
}
interface SessionRow {
  id: string;
  user_id: string;
  csrf_token: string;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
}
interface TokenRow {
  id: string;
  user_id: string;
  name: string;
  token_hash: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  revoked_at: string | null;
}

function toUser(row: UserRow): User {
  return { id: row.id, username: row.username, role: row.role as Role, disabled: row.disabled === 1, createdAt: row.created_at };
}
function toSession(row: SessionRow): SessionRecord {
  return {
    id: row.id,
    userId: row.user_id,
    csrfToken: row.csrf_token,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}
function toToken(row: TokenRow): ApiTokenRecord {
  return {
    id: row.id,
    userId: row.user_id,
    name: row.name,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}
function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export interface AuthRepositoryOptions {
  clock?: Clock;
  /** touchApiToken writes at most once per this interval per token. Default 60000 ms. */
  touchIntervalMs?: number;
}

export function createAuthRepository(db: Database, opts: AuthRepositoryOptions = {}) {
  const clock = opts.clock ?? systemClock;
  const touchIntervalMs = opts.touchIntervalMs ?? 60_000;

  const s = {
    insertUser: db.prepare<[string, string, string, string, string]>(
      'INSERT INTO users (id, username, password_hash, role, disabled, created_at) VALUES (?, ?, ?, ?, 0, ?)',
    ),
    userByName: db.prepare<[string], UserRow>('SELECT * FROM users WHERE username = ?'),
    userById: db.prepare<[string], UserRow>('SELECT * FROM users WHERE id = ?'),
    users: db.prepare<[], UserRow>('SELECT * FROM users ORDER BY created_at, id'),
    setDisabled: db.prepare<[number, string]>('UPDATE users SET disabled = ? WHERE id = ?'),
    setPassword: db.prepare<[string, string]>('UPDATE users SET password_hash = ? WHERE id = ?'),
    countUsers: db.prepare<[], number>('SELECT count(*) FROM users').pluck(),
    countAdmins: db.prepare<[], number>(`SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0`).pluck(),

    insertSession: db.prepare<[string, string, string, string, string]>(
      'INSERT INTO sessions (id, user_id, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)',
    ),
    session: db.prepare<[string], SessionRow>('SELECT * FROM sessions WHERE id = ?'),
    // Every authenticated request: the session and its user in one lookup.
    activeSessionUser: db.prepare<[string, string], SessionRow & { u_username: string; u_role: string; u_disabled: number; u_created_at: string }>(
      `SELECT s.*, u.username AS u_username, u.role AS u_role, u.disabled AS u_disabled, u.created_at AS u_created_at
       FROM sessions s JOIN users u ON u.id = s.user_id
       WHERE s.id = ? AND s.revoked_at IS NULL AND s.expires_at > ?`,
    ),
    revokeSession: db.prepare<[string, string]>('UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
    revokeUserSessions: db.prepare<[string, string]>(
      'UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL',
    ),
    purgeSessions: db.prepare<[string]>('DELETE FROM sessions WHERE expires_at < ?'),

    insertToken: db.prepare<[string, string, string, string, string, string | null]>(
      'INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    tokenByHash: db.prepare<[string], TokenRow>('SELECT * FROM api_tokens WHERE token_hash = ?'),
    tokensOfUser: db.prepare<[string], TokenRow>(
      'SELECT * FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at, id',
    ),
    revokeToken: db.prepare<[string, string, string]>(
      'UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL',
    ),
    // Throttled: a token used on every request would otherwise write on every request.
    touchToken: db.prepare<[string, string, string]>(
      'UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)',
    ),
  };

  return {
    // --- users -------------------------------------------------------------------------------

    /** Creates a user. Usernames are unique regardless of case. */
    createUser(input: { id?: string; username: string; passwordHash: string; role: Role }): CreateUserResult {
      const id = input.id ?? uuidv7();
      try {
        s.insertUser.run(id, input.username, input.passwordHash, input.role, toIso(clock()));
      } catch (err) {
        if (isUniqueViolation(err)) return { ok: false, reason: 'username_taken' };
        throw err;
      }
      return { ok: true, user: toUser(s.userById.get(id)!) };
    },

    /** Case-insensitive lookup, with the password hash. */
    findUserByUsername(username: string): UserWithSecret | null {
      const row = s.userByName.get(username);
      return row ? { ...toUser(row), passwordHash: row.password_hash } : null;
    },

    findUserById(id: string): UserWithSecret | null {
      const row = s.userById.get(id);
      return row ? { ...toUser(row), passwordHash: row.password_hash } : null;
    },

    listUsers(): User[] {
      return s.users.all().map(toUser);
    },

    /** Returns false when there is no such user. */
    setUserDisabled(id: string, disabled: boolean): boolean {
      return s.setDisabled.run(disabled ? 1 : 0, id).changes > 0;
    },

    setPasswordHash(id: string, passwordHash: string): boolean {
      return s.setPassword.run(passwordHash, id).changes > 0;
    },

    countUsers(): number {
      return s.countUsers.get() ?? 0;
    },

    /** Enabled admins; lets the API refuse to disable the last one. */
    countActiveAdmins(): number {
      return s.countAdmins.get() ?? 0;
    },

    // --- sessions ----------------------------------------------------------------------------

    createSession(input: { id: string; userId: string; csrfToken: string; expiresAt: Date | string }): SessionRecord {
      s.insertSession.run(input.id, input.userId, input.csrfToken, toIso(clock()), toIso(input.expiresAt));
      return toSession(s.session.get(input.id)!);
    },

    /** The session as stored, revoked or expired included; the caller decides. */
    getSession(id: string): SessionRecord | null {
      const row = s.session.get(id);
      return row ? toSession(row) : null;
    },

    /** The session if it is neither revoked nor expired at `now`, else null. */
    getActiveSession(id: string, now: Date | string = clock()): SessionRecord | null {
      const row = s.session.get(id);
      if (!row || row.revoked_at !== null || row.expires_at <= toIso(now)) return null;
      return toSession(row);
    },

    /** The active session (neither revoked nor expired at `now`) with its user, or null. */
    getActiveSessionWithUser(id: string, now: Date | string = clock()): { session: SessionRecord; user: User } | null {
      const row = s.activeSessionUser.get(id, toIso(now));
      if (!row) return null;
      return {
        session: toSession(row),
        user: { id: row.user_id, username: row.u_username, role: row.u_role as Role, disabled: row.u_disabled === 1, createdAt: row.u_created_at },
      };
    },

    /** Returns false when the session was unknown or already revoked. */
    revokeSession(id: string): boolean {
      return s.revokeSession.run(toIso(clock()), id).changes > 0;
    },

    /** Revokes every live session of a user; returns how many. */
    revokeUserSessions(userId: string): number {
      return s.revokeUserSessions.run(toIso(clock()), userId).changes;
    },

    /** Deletes sessions that expired before `before`; returns how many. */
    purgeExpiredSessions(before: Date | string = clock()): number {
      return s.purgeSessions.run(toIso(before)).changes;
    },

    // --- API tokens --------------------------------------------------------------------------

    createApiToken(input: { id: string; userId: string; name: string; tokenHash: string; expiresAt: Date | string | null }): ApiTokenRecord {
      s.insertToken.run(
        input.id,
        input.userId,
        input.name,
        input.tokenHash,
        toIso(clock()),
        input.expiresAt === null ? null : toIso(input.expiresAt),
      );
      return toToken(s.tokenByHash.get(input.tokenHash)!);
    },

    /** The token with this hash, revoked or expired included; the caller decides. */
    findApiTokenByHash(tokenHash: string): ApiTokenRecord | null {
      const row = s.tokenByHash.get(tokenHash);
      return row ? toToken(row) : null;
    },

    /** A user's tokens that are not revoked (expired ones included, so they can be seen and revoked). */
    listApiTokens(userId: string): ApiToken[] {
      return s.tokensOfUser.all(userId).map((row) => {
        const { userId: _u, revokedAt: _r, ...token } = toToken(row);
        return token;
      });
    },

    /** Revokes a token of this user; false when it is not theirs, unknown or already revoked. */
    revokeApiToken(id: string, userId: string): boolean {
      return s.revokeToken.run(toIso(clock()), id, userId).changes > 0;
    },

    /** Records use of a token (at most once per touchIntervalMs). */
    touchApiToken(id: string): boolean {
      const now = clock();
      return s.touchToken.run(toIso(now), id, toIso(now.getTime() - touchIntervalMs)).changes > 0;
    },
  };
}

export type AuthRepository = ReturnType<typeof createAuthRepository>;
