/**
 * Who is on a socket, without SQLite: the session JWT the api issued (same secret, HS256 only,
 * iss/aud/exp checked) plus two Redis keys the api writes, the revoked session and the disabled user.
 */
import { createVerifier, TokenError } from 'fast-jwt';
import type { Redis } from 'ioredis';
import { API_TOKEN_PREFIX, JWT_ALGORITHM, JWT_AUDIENCE, JWT_ISSUER, SESSION_COOKIE } from '@dubgate/contracts/auth';
import { ERROR_CODES, type ErrorCode } from '@dubgate/contracts/errors';
import type { GatewayKeys } from '@dubgate/queues/names';

/** The longest token accepted (the contract's AuthenticateArgs). */
export const MAX_TOKEN_LENGTH = 4096;

export interface Identity {
  userId: string;
  sessionId: string;
  role: 'admin' | 'user';
  /** When the token expires (ms since the epoch). */
  expiresAt: number;
}

/** An authentication refusal with a stable code; the message may be shown to the client. */
export class AuthError extends Error {
  override readonly name = 'AuthError';
  constructor(
    readonly code: ErrorCode,
    message: string = ERROR_CODES[code].message,
  ) {
    super(message);
  }
}

export const API_TOKEN_REFUSED_MESSAGE =
  'API tokens (dgt_…) are not accepted on the WebSocket yet: log in (POST /api/auth/login) and use the session token';

export type TokenVerifier = (token: string) => Identity;

/** Verifies a session JWT; throws AuthError TOKEN_INVALID or TOKEN_EXPIRED. Never consults Redis. */
export function createTokenVerifier(secret: string): TokenVerifier {
  const verify = createVerifier({
    key: secret,
    // Pinned: `none` and every other algorithm are refused whatever the token's header says.
    algorithms: [JWT_ALGORITHM],
    allowedIss: JWT_ISSUER,
    allowedAud: JWT_AUDIENCE,
    requiredClaims: ['sub', 'sid', 'exp'],
  });

  return (token) => {
    if (typeof token !== 'string' || token.length === 0) throw new AuthError('UNAUTHENTICATED');
    if (token.length > MAX_TOKEN_LENGTH) throw new AuthError('TOKEN_INVALID', 'The token is too long');
    if (token.startsWith(API_TOKEN_PREFIX)) throw new AuthError('TOKEN_INVALID', API_TOKEN_REFUSED_MESSAGE);
    let claims: unknown;
    try {
      claims = verify(token);
    } catch (err) {
      if (err instanceof TokenError && err.code === TokenError.codes.expired) throw new AuthError('TOKEN_EXPIRED');
      throw new AuthError('TOKEN_INVALID');
    }
    const c = claims as Record<string, unknown>;
    const { sub, sid, role, exp } = c;
    if (
      typeof sub !== 'string' ||
      sub.length === 0 ||
      sub.length > 128 ||
      typeof sid !== 'string' ||
      sid.length === 0 ||
      sid.length > 256 ||
      (role !== 'admin' && role !== 'user') ||
      typeof exp !== 'number' ||
      !Number.isFinite(exp)
    ) {
      throw new AuthError('TOKEN_INVALID');
    }
    return { userId: sub, sessionId: sid, role, expiresAt: exp * 1000 };
  };
}

type HandshakeLike = {
  auth?: unknown;
  headers: Record<string, string | string[] | undefined>;
};

export type HandshakeCredential =
  | { kind: 'none' }
  | { kind: 'token'; token: string; source: 'auth' | 'header' | 'cookie' }
  | { kind: 'invalid'; error: AuthError };

/** Value of one cookie in a Cookie header, or undefined. */
export function readCookie(header: string | string[] | undefined, name: string): string | undefined {
  const text = Array.isArray(header) ? header.join('; ') : header;
  if (!text) return undefined;
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  }
  return undefined;
}

/**
 * The credential a handshake carries, by precedence: `auth.token`, then `Authorization: Bearer`,
 * then the session cookie (as the api reads them). None at all is allowed: the socket may still
 * send `authenticate(token)` before its timeout.
 */
export function handshakeCredential(handshake: HandshakeLike): HandshakeCredential {
  const auth = handshake.auth;
  if (typeof auth === 'object' && auth !== null && Object.hasOwn(auth, 'token')) {
    const token = (auth as { token: unknown }).token;
    if (typeof token !== 'string' || token.length === 0) {
      return { kind: 'invalid', error: new AuthError('TOKEN_INVALID', 'auth.token must be a non-empty string') };
    }
    return { kind: 'token', token, source: 'auth' };
  }
  const header = handshake.headers.authorization;
  if (header !== undefined) {
    const match = typeof header === 'string' ? /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header) : null;
    if (!match) return { kind: 'invalid', error: new AuthError('TOKEN_INVALID', 'Authorization must be "Bearer <token>"') };
    return { kind: 'token', token: match[1]!, source: 'header' };
  }
  const cookie = readCookie(handshake.headers.cookie, SESSION_COOKIE);
  if (cookie) return { kind: 'token', token: cookie, source: 'cookie' };
  return { kind: 'none' };
}

/**
 * Throws AuthError SESSION_REVOKED or USER_DISABLED when the api marked the session or the user,
 * and SERVICE_UNAVAILABLE when Redis cannot say (fail closed). One round trip.
 */
export async function assertNotRevoked(redis: Pick<Redis, 'mget'>, keys: GatewayKeys, identity: Identity): Promise<void> {
  let values: Array<string | null>;
  try {
    values = await redis.mget(keys.revokedSessionKey(identity.sessionId), keys.userDisabledKey(identity.userId));
  } catch {
    throw new AuthError('SERVICE_UNAVAILABLE', 'Cannot check the session right now; try again shortly');
  }
  if (values[0] !== null && values[0] !== undefined) throw new AuthError('SESSION_REVOKED');
  if (values[1] !== null && values[1] !== undefined) throw new AuthError('USER_DISABLED');
}
