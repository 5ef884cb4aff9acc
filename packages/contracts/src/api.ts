import { Type, type Static } from '@sinclair/typebox';
import { JobSchema, JobEventRecordSchema, LogLevelSchema } from './jobs.js';

/** Every error the API answers with has this shape. */
export const ErrorResponseSchema = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.String({ description: 'Stable code, see contracts/errors' }),
        message: Type.String(),
        details: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
        requestId: Type.Optional(Type.String()),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type ErrorResponse = Static<typeof ErrorResponseSchema>;

export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 200;

/**
 * `GET /api/jobs`. `status` may name several states, comma separated (`QUEUED,FAILED`).
 * Newest first. Page with `cursor` (from `nextCursor`) or `offset`.
 */
export const ListJobsQuerySchema = Type.Object(
  {
    status: Type.Optional(Type.String({ maxLength: 200, pattern: '^[A-Z]+(,[A-Z]+)*$' })),
    search: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE_LIMIT, default: DEFAULT_PAGE_LIMIT })),
    cursor: Type.Optional(Type.String({ maxLength: 100, pattern: '^[A-Za-z0-9_-]+$' })),
    offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  },
  { additionalProperties: false },
);
export type ListJobsQuery = Static<typeof ListJobsQuerySchema>;

export const JobListResponseSchema = Type.Object(
  {
    items: Type.Array(JobSchema),
    /** Number of jobs matching the filters. */
    total: Type.Integer({ minimum: 0 }),
    /** False when `total` was capped (a very broad search); it is then a lower bound. */
    totalExact: Type.Boolean(),
    nextCursor: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);
export type JobListResponse = Static<typeof JobListResponseSchema>;

export const JobResponseSchema = Type.Object({ job: JobSchema }, { additionalProperties: false });
export type JobResponse = Static<typeof JobResponseSchema>;

export const JobIdParamsSchema = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }) },
  { additionalProperties: false },
);
export type JobIdParams = Static<typeof JobIdParamsSchema>;

export const MAX_LOGS_LIMIT = 500;
/** `GET /api/jobs/:id/logs`: events in id order, after `after` (exclusive). */
export const LogsQuerySchema = Type.Object(
  {
    after: Type.Optional(Type.Integer({ minimum: 0 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LOGS_LIMIT, default: 100 })),
    level: Type.Optional(LogLevelSchema),
  },
  { additionalProperties: false },
);
export type LogsQuery = Static<typeof LogsQuerySchema>;

export const LogsResponseSchema = Type.Object(
  {
    items: Type.Array(JobEventRecordSchema),
    /** Pass as `after` to get the next page; null when this page is the last for now. */
    nextAfter: Type.Union([Type.Integer(), Type.Null()]),
  },
  { additionalProperties: false },
);
export type LogsResponse = Static<typeof LogsResponseSchema>;

export const LoginBodySchema = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 64 }),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);
export type LoginBody = Static<typeof LoginBodySchema>;

export const LoginResponseSchema = Type.Object(
  {
    token: Type.String(),
    expiresAt: Type.String({ format: 'date-time' }),
    /** Send as `x-csrf-token` on state-changing requests that rely on the session cookie. */
    csrfToken: Type.String(),
    user: Type.Object({ id: Type.String(), username: Type.String(), role: Type.String() }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
export type LoginResponse = Static<typeof LoginResponseSchema>;

export const ROLES = ['admin', 'user'] as const;
export type Role = (typeof ROLES)[number];
export const RoleSchema = Type.Union(ROLES.map((r) => Type.Literal(r)));

export const UserSchema = Type.Object(
  {
    id: Type.String(),
    username: Type.String(),
    role: RoleSchema,
    disabled: Type.Boolean(),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type User = Static<typeof UserSchema>;

export const CreateUserBodySchema = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.@-]+$' }),
    password: Type.String({ minLength: 12, maxLength: 1024 }),
    role: Type.Optional(RoleSchema),
  },
  { additionalProperties: false },
);
export type CreateUserBody = Static<typeof CreateUserBodySchema>;

export const UpdateUserBodySchema = Type.Object(
  { disabled: Type.Boolean() },
  { additionalProperties: false },
);

export const ApiTokenSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { additionalProperties: false },
);
export type ApiToken = Static<typeof ApiTokenSchema>;

export const CreateApiTokenBodySchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
  },
  { additionalProperties: false },
);
export type CreateApiTokenBody = Static<typeof CreateApiTokenBodySchema>;

/** Shown once at creation; only a hash is stored. */
export const CreatedApiTokenSchema = Type.Object(
  { token: Type.String(), apiToken: ApiTokenSchema },
  { additionalProperties: false },
);

export const DEPENDENCY_STATUSES = ['up', 'down'] as const;
export const HealthResponseSchema = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
    uptime: Type.Number({ description: 'seconds since the process started' }),
    dependencies: Type.Object({
      redis: Type.Union([Type.Literal('up'), Type.Literal('down')]),
      sqlite: Type.Union([Type.Literal('up'), Type.Literal('down')]),
      filesystem: Type.Union([Type.Literal('up'), Type.Literal('down')]),
    }),
    timestamp: Type.String({ format: 'date-time' }),
  }
);
export type HealthResponse = Static<typeof HealthResponseSchema>;
