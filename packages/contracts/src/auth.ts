/**
 * Authentication facts shared by the api (which issues tokens) and the realtime nodes
 * (which verify them without SQLite).
 */
export const JWT_ALGORITHM = 'HS256';
export const JWT_ISSUER = 'dubgate';
export const JWT_AUDIENCE = 'dubgate';
export const SESSION_COOKIE = 'dubgate_session';
export const CSRF_HEADER = 'x-csrf-token';
/** API tokens start with this, so a bearer token's kind is known before any lookup. */
export const API_TOKEN_PREFIX = 'dgt_';

/** Claims of a session JWT. */
export interface SessionClaims {
  sub: string;
  sid: string;
  role: 'admin' | 'user';
  iat?: number;
  exp?: number;
  iss?: string;
  aud?: string;
}

/** Published (with the session id) when a session ends, so live sockets close at once. */
export const SESSION_REVOKED_CHANNEL = 'control:session-revoked';
/** Published (with the user id) when an admin disables a user. */
export const USER_DISABLED_CHANNEL = 'control:user-disabled';
