import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { CreateJobBodySchema, JobDetailSchema } from '@dubgate/contracts/jobs';
import {
  ErrorResponseSchema,
  JobIdParamsSchema,
  JobListResponseSchema,
  JobResponseSchema,
  ListJobsQuerySchema,
  LogsQuerySchema,
  LogsResponseSchema,
} from '@dubgate/contracts/api';
import { ValidationError } from '@dubgate/runtime/errors';
import { requireUser } from '../auth-context.js';
import type { JobsService } from '../services/jobs-service.js';

const errors = {
  400: ErrorResponseSchema,
  401: ErrorResponseSchema,
  403: ErrorResponseSchema,
  404: ErrorResponseSchema,
  409: ErrorResponseSchema,
};

const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7E]+$' })),
});

export default async function jobsRoutes(app: FastifyInstance, opts: { jobs: JobsService }) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const { jobs } = opts;

  r.post(
    '/api/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Create a job',
        body: CreateJobBodySchema,
        headers: IdempotencyHeaders,
        response: { 200: JobResponseSchema, 201: JobResponseSchema, ...errors, 422: ErrorResponseSchema, 503: ErrorResponseSchema },
      },
    },
    async (request, reply) => {
      const outcome = await jobs.create(requireUser(request.auth), request.body, request.headers['idempotency-key']);
      if (!outcome.created) void reply.header('idempotent-replayed', 'true');
      return reply.status(outcome.created ? 201 : 200).send({ job: outcome.job });
    },
  );

  r.get(
    '/api/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'List jobs, newest first',
        querystring: ListJobsQuerySchema,
        response: { 200: JobListResponseSchema, ...errors },
      },
    },
    async (request) => {
      if (request.query.cursor !== undefined && request.query.offset !== undefined) {
        throw new ValidationError('VALIDATION_FAILED', 'use either cursor or offset, not both');
      }
      return jobs.list(requireUser(request.auth), request.query);
    },
  );

  r.get(
    '/api/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'A job with its media metadata and event history',
        params: JobIdParamsSchema,
        response: { 200: JobDetailSchema, ...errors },
      },
    },
    async (request) => jobs.get(requireUser(request.auth), request.params.id),
  );

  for (const op of ['cancel', 'retry', 'resume'] as const) {
    r.post(
      `/api/jobs/:id/${op}`,
      {
        schema: {
          tags: ['jobs'],
          summary: { cancel: 'Cancel an active job', retry: 'Retry a failed or canceled job from the beginning', resume: 'Resume a job that failed while dubbing, from its last checkpoint' }[op],
          params: JobIdParamsSchema,
          response: { 200: JobResponseSchema, ...errors },
        },
      },
      async (request) => ({ job: await jobs[op](requireUser(request.auth), request.params.id) }),
    );
  }

  r.delete(
    '/api/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Delete a job, its queue entries and its media files',
        params: JobIdParamsSchema,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      await jobs.remove(requireUser(request.auth), request.params.id);
      return reply.status(204).send(null);
    },
  );

  r.get(
    '/api/jobs/:id/logs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'A job event log, oldest first, after a cursor',
        params: JobIdParamsSchema,
        querystring: LogsQuerySchema,
        response: { 200: LogsResponseSchema, ...errors },
      },
    },
    async (request) => jobs.logs(requireUser(request.auth), request.params.id, request.query),
  );
}
