import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AuthRepository } from '@dubgate/db/auth';
import { CreateUserBodySchema, ErrorResponseSchema, UpdateUserBodySchema, UserSchema } from '@dubgate/contracts/api';
import { ConflictError, NotFoundError } from '@dubgate/runtime/errors';
import { hashPassword } from '../passwords.js';

const errors = { 400: ErrorResponseSchema, 401: ErrorResponseSchema, 403: ErrorResponseSchema, 404: ErrorResponseSchema, 409: ErrorResponseSchema };
const UserParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });

export interface UsersRoutesOptions {
  auth: AuthRepository;
  /** Tells realtime nodes (Redis key and message) so the user's live sockets close. Best effort. */
  onUserDisabled: (userId: string) => Promise<void>;
  /** Undoes onUserDisabled's key when the user is enabled again. Best effort. */
  onUserEnabled?: (userId: string) => Promise<void>;
}

/** Admin-only user management. */
export default async function usersRoutes(app: FastifyInstance, opts: UsersRoutesOptions) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const { auth } = opts;

  r.get(
    '/api/users',
    { config: { admin: true }, schema: { tags: ['users'], summary: 'List users', response: { 200: Type.Object({ items: Type.Array(UserSchema) }), ...errors } } },
    async () => ({ items: auth.listUsers() }),
  );

  r.post(
    '/api/users',
    {
      config: { admin: true },
      schema: { tags: ['users'], summary: 'Create a user', body: CreateUserBodySchema, response: { 201: Type.Object({ user: UserSchema }), ...errors } },
    },
    async (request, reply) => {
      const result = auth.createUser({
        username: request.body.username,
        passwordHash: await hashPassword(request.body.password),
        role: request.body.role ?? 'user',
      });
      if (!result.ok) throw new ConflictError('USER_EXISTS');
      return reply.status(201).send({ user: result.user });
    },
  );

  r.patch(
    '/api/users/:id',
    {
      config: { admin: true },
      schema: {
        tags: ['users'],
        summary: 'Disable or enable a user (disabling ends their sessions)',
        params: UserParams,
        body: UpdateUserBodySchema,
        response: { 200: Type.Object({ user: UserSchema }), ...errors },
      },
    },
    async (request) => {
      const target = auth.findUserById(request.params.id);
      if (!target) throw new NotFoundError('NOT_FOUND', 'No such user');
      if (request.body.disabled && target.role === 'admin' && !target.disabled && auth.countActiveAdmins() <= 1) {
        throw new ConflictError('STATE_CONFLICT', 'The last active admin cannot be disabled');
      }
      auth.setUserDisabled(target.id, request.body.disabled);
      if (request.body.disabled) auth.revokeUserSessions(target.id);
      // SQLite already holds the change: a Redis failure must not turn it into an error answer.
      try {
        if (request.body.disabled) await opts.onUserDisabled(target.id);
        else await opts.onUserEnabled?.(target.id);
      } catch (err) {
        request.log.warn({ err, userId: target.id }, 'could not tell realtime nodes about the user change (Redis)');
      }
      const { passwordHash: _omit, ...user } = auth.findUserById(target.id)!;
      return { user };
    },
  );
}
