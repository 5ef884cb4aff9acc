import fp from 'fastify-plugin';
import fastifyJwt from '@fastify/jwt';
import fastifyCookie from '@fastify/cookie';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthRepository } from '@dubgate/db/auth';
import { ForbiddenError, UnauthorizedError } from '@dubgate/runtime/errors';
import { hashApiToken, safeEqual } from '../passwords.js';
import type { AuthUser } from '../auth-context.js';

import {
  API_TOKEN_PREFIX,
  CSRF_HEADER,
  JWT_AUDIENCE,
  JWT_ISSUER,
  SESSION_COOKIE,
  type SessionClaims,
} from '@dubgate/contracts/auth';

export { API_TOKEN_PREFIX, CSRF_HEADER, SESSION_COOKIE, type SessionClaims };

export interface AuthPluginOptions {
  secret: string;
  sessionTtlSeconds: number;
  auth: AuthRepository;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

declare module 'fastify' {
  interface FastifyInstance {
    signSession(claims: SessionClaims): string;
  }
}

/**
 * Authenticates every request except routes marked `config.public`:
 * - `Authorization: Bearer <jwt>` (login token) or `Bearer dgt_…` (API token);
 * - the httpOnly session cookie, which also needs `x-csrf-token` on state-changing requests.
 * A JWT is only as good as its session row: logout revokes it everywhere at once.
 */
async function authPlugin(app: FastifyInstance, opts: AuthPluginOptions) {
  const { auth } = opts;
  await app.register(fastifyCookie);
  await app.register(fastifyJwt, {
    secret: opts.secret,
    sign: { algorithm: 'HS256', iss: JWT_ISSUER, aud: JWT_AUDIENCE, expiresIn: opts.sessionTtlSeconds },
    // cache: a token verified once is not verified again (fast-jwt keeps it until its exp);
    // revocation does not depend on it, the session row is read on every request.
    verify: { algorithms: ['HS256'], allowedIss: JWT_ISSUER, allowedAud: JWT_AUDIENCE, requiredClaims: ['sub', 'sid', 'exp'], cache: 10_000 },
  });

  app.decorate('signSession', (claims: SessionClaims) => app.jwt.sign(claims));
  app.decorateRequest('auth', null);

  function verifyJwt(token: string): SessionClaims {
    try {
      return app.jwt.verify<SessionClaims>(token);
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (code.includes('EXPIRED')) throw new UnauthorizedError('TOKEN_EXPIRED');
      throw new UnauthorizedError('TOKEN_INVALID');
    }
  }

  function userFromSession(claims: SessionClaims, via: 'bearer' | 'cookie', request: FastifyRequest): AuthUser {
    const found = auth.getActiveSessionWithUser(claims.sid);
    if (!found || found.session.userId !== claims.sub) throw new UnauthorizedError('SESSION_REVOKED');
    const { session, user } = found;
    if (user.disabled) throw new ForbiddenError('USER_DISABLED');
    if (via === 'cookie' && !SAFE_METHODS.has(request.method)) {
      const header = request.headers[CSRF_HEADER];
      if (typeof header !== 'string' || !safeEqual(header, session.csrfToken)) throw new ForbiddenError('CSRF_TOKEN_INVALID');
    }
    return { id: user.id, username: user.username, role: user.role, via, sessionId: session.id };
  }

  function userFromApiToken(token: string): AuthUser {
    const record = auth.findApiTokenByHash(hashApiToken(token));
    if (!record || record.revokedAt) throw new UnauthorizedError('TOKEN_INVALID');
    if (record.expiresAt && Date.parse(record.expiresAt) <= Date.now()) throw new UnauthorizedError('TOKEN_EXPIRED');
    const user = auth.findUserById(record.userId);
    if (!user) throw new UnauthorizedError('TOKEN_INVALID');
    if (user.disabled) throw new ForbiddenError('USER_DISABLED');
    auth.touchApiToken(record.id);
    return { id: user.id, username: user.username, role: user.role, via: 'api_token', sessionId: null };
  }

  /** Resolves who is asking, or throws the reason why not. */
  function authenticate(request: FastifyRequest): AuthUser {
    const header = request.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
      if (!match) throw new UnauthorizedError('TOKEN_INVALID', 'Authorization must be "Bearer <token>"');
      const token = match[1]!;
      return token.startsWith(API_TOKEN_PREFIX) ? userFromApiToken(token) : userFromSession(verifyJwt(token), 'bearer', request);
    }
    const cookie = request.cookies[SESSION_COOKIE];
    if (cookie) return userFromSession(verifyJwt(cookie), 'cookie', request);
    throw new UnauthorizedError('UNAUTHENTICATED');
  }

  app.addHook('onRequest', async (request) => {
    const config = request.routeOptions.config;
    // Unknown routes fall through to the 404 handler.
    if (request.routeOptions.url === undefined || config.public) return;
    request.auth = authenticate(request);
    if (config.admin && request.auth.role !== 'admin') throw new ForbiddenError('FORBIDDEN', 'Admins only');
  });
}

export default fp(authPlugin, { name: 'auth', dependencies: ['errors'] });
