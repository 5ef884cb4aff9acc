import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { randomUUID } from 'node:crypto';
import type { AuthRepository } from '@dubgate/db/auth';
import {
  ApiTokenSchema,
  CreateApiTokenBodySchema,
  CreatedApiTokenSchema,
  ErrorResponseSchema,
  LoginBodySchema,
  LoginResponseSchema,
} from '@dubgate/contracts/api';
import { ForbiddenError, NotFoundError, RateLimitedError, UnauthorizedError } from '@dubgate/runtime/errors';
import { DUMMY_PASSWORD_HASH, hashApiToken, randomToken, verifyPassword } from '../passwords.js';
import { createAttemptLimiter } from '../attempt-limiter.js';
import { requireUser } from '../auth-context.js';
import { API_TOKEN_PREFIX, SESSION_COOKIE } from '../plugins/auth.js';

export interface AuthRoutesOptions {
  auth: AuthRepository;
  sessionTtlSeconds: number;
  cookieSecure: boolean;
  loginMaxPerClient: number;
  loginMaxPerUsername: number;
  /** Makes a revoked session visible to every realtime node (Redis). Best effort. */
  publishRevocation: (sessionId: string, expiresAt: Date) => Promise<void>;
}

const errors = { 400: ErrorResponseSchema, 401: ErrorResponseSchema, 403: ErrorResponseSchema, 429: ErrorResponseSchema };

export default async function authRoutes(app: FastifyInstance, opts: AuthRoutesOptions) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const { auth } = opts;
  const perClient = createAttemptLimiter({ max: opts.loginMaxPerClient, windowMs: 60_000 });
  const perUsername = createAttemptLimiter({ max: opts.loginMaxPerUsername, windowMs: 5 * 60_000 });

  r.post(
    '/api/auth/login',
    {
      config: { public: true },
      schema: {
        tags: ['auth'],
        summary: 'Log in; returns a bearer token and sets the session cookie',
        body: LoginBodySchema,
        response: { 200: LoginResponseSchema, ...errors },
      },
    },
    async (request, reply) => {
      const { username, password } = request.body;
      const waitClient = perClient.hit(request.ip);
      const waitUser = perUsername.hit(username.toLowerCase());
      const wait = Math.max(waitClient, waitUser);
      if (wait > 0) throw new RateLimitedError('RATE_LIMITED', 'Too many login attempts; try again later', { retryAfterSeconds: wait });

      const user = auth.findUserByUsername(username);
      // Verify against a dummy hash for unknown users so timing does not reveal who exists.
      const ok = await verifyPassword(password, user?.passwordHash ?? DUMMY_PASSWORD_HASH);
      if (!user || !ok) throw new UnauthorizedError('INVALID_CREDENTIALS');
      if (user.disabled) throw new ForbiddenError('USER_DISABLED');
      perUsername.reset(username.toLowerCase());

      const expiresAt = new Date(Date.now() + opts.sessionTtlSeconds * 1000);
      const session = auth.createSession({ id: randomToken(16), userId: user.id, csrfToken: randomToken(24), expiresAt });
      const token = app.signSession({ sub: user.id, sid: session.id, role: user.role });
      void reply.setCookie(SESSION_COOKIE, token, {
        httpOnly: true,
        sameSite: 'strict',
        secure: opts.cookieSecure,
        path: '/',
        expires: expiresAt,
      });
      return {
        token,
        expiresAt: expiresAt.toISOString(),
        csrfToken: session.csrfToken,
        user: { id: user.id, username: user.username, role: user.role },
      };
    },
  );

  r.post(
    '/api/auth/logout',
    { schema: { tags: ['auth'], summary: 'End the current session everywhere', response: { 204: Type.Null(), ...errors } } },
    async (request, reply) => {
      const user = requireUser(request.auth);
      if (user.sessionId) {
        const session = auth.getSession(user.sessionId);
        auth.revokeSession(user.sessionId);
        try {
          await opts.publishRevocation(user.sessionId, new Date(session?.expiresAt ?? Date.now() + opts.sessionTtlSeconds * 1000));
        } catch (err) {
          request.log.warn({ err }, 'could not publish the revocation to Redis; realtime nodes check the token expiry');
        }
      }
      void reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return reply.status(204).send(null);
    },
  );

  r.get(
    '/api/auth/session',
    {
      schema: {
        tags: ['auth'],
        summary: 'Who is logged in, and the CSRF token for cookie sessions',
        response: {
          200: Type.Object({
            user: Type.Object({ id: Type.String(), username: Type.String(), role: Type.String() }),
            csrfToken: Type.Union([Type.String(), Type.Null()]),
            expiresAt: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const user = requireUser(request.auth);
      const session = user.sessionId ? auth.getSession(user.sessionId) : null;
      return {
        user: { id: user.id, username: user.username, role: user.role },
        csrfToken: session?.csrfToken ?? null,
        expiresAt: session?.expiresAt ?? null,
      };
    },
  );

  r.post(
    '/api/auth/tokens',
    {
      schema: {
        tags: ['auth'],
        summary: 'Create an API token (shown once)',
        body: CreateApiTokenBodySchema,
        response: { 201: CreatedApiTokenSchema, ...errors },
      },
    },
    async (request, reply) => {
      const user = requireUser(request.auth);
      const token = `${API_TOKEN_PREFIX}${randomToken(32)}`;
      const days = request.body.expiresInDays;
      const record = auth.createApiToken({
        id: randomUUID(),
        userId: user.id,
        name: request.body.name,
        tokenHash: hashApiToken(token),
        expiresAt: days ? new Date(Date.now() + days * 86_400_000) : null,
      });
      return reply.status(201).send({
        token,
        apiToken: { id: record.id, name: record.name, createdAt: record.createdAt, lastUsedAt: record.lastUsedAt, expiresAt: record.expiresAt },
      });
    },
  );

  r.get(
    '/api/auth/tokens',
    { schema: { tags: ['auth'], summary: 'Your API tokens', response: { 200: Type.Object({ items: Type.Array(ApiTokenSchema) }), ...errors } } },
    async (request) => ({ items: auth.listApiTokens(requireUser(request.auth).id) }),
  );

  r.delete(
    '/api/auth/tokens/:id',
    {
      schema: {
        tags: ['auth'],
        summary: 'Revoke an API token',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false }),
        response: { 204: Type.Null(), 404: ErrorResponseSchema, ...errors },
      },
    },
    async (request, reply) => {
      if (!auth.revokeApiToken(request.params.id, requireUser(request.auth).id)) throw new NotFoundError('NOT_FOUND', 'No such token');
      return reply.status(204).send(null);
    },
  );
}
