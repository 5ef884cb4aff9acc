import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import { openDatabase, closeDatabase, type Database } from '@dubgate/db/open';
import { createJobsRepository } from '@dubgate/db/jobs';
import { createEventsRepository } from '@dubgate/db/events';
import { createOutboxRepository, groupCommittedOutbox } from '@dubgate/db/outbox';
import { createAuthRepository } from '@dubgate/db/auth';
import { createGroupCommit, type GroupCommit } from '@dubgate/db/group-commit';
import { createRedisConnection, closeRedis, pingWithTimeout } from '@dubgate/queues/connections';
import { createStageQueues } from '@dubgate/queues/stage-queues';
import { createEventPublisher } from '@dubgate/queues/publisher';
import { createOutboxDelivery } from '@dubgate/queues/outbox-delivery';
import { gatewayKeys } from '@dubgate/queues/names';
import { SESSION_REVOKED_CHANNEL, USER_DISABLED_CHANNEL } from '@dubgate/contracts/auth';
import { createMetrics, groupCommitMetrics, type Metrics } from '@dubgate/runtime/metrics';
import { loggerOptions } from '@dubgate/runtime/logger';
import type { ApiConfig } from './config.js';
import errorsPlugin from './plugins/errors.js';
import authPlugin from './plugins/auth.js';
import jobsRoutes from './routes/jobs.js';
import authRoutes from './routes/auth.js';
import usersRoutes from './routes/users.js';
import observabilityRoutes, { mediaRootWritable } from './routes/observability.js';
import { createJobsService } from './services/jobs-service.js';
import { ensureAdmin } from './services/bootstrap.js';

const addFormats = addFormatsModule.default;

export interface ApiDependencies {
  config: ApiConfig;
  /** pino logger; default: built from LOG_LEVEL. */
  logger?: Logger;
  metrics?: Metrics;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Set on the start that created the first admin without ADMIN_PASSWORD: print it once. */
    generatedAdminPassword: string | null;
  }
}

/** Reads the scheduler's download hold at most every 500 ms: it is on the ingest path. */
function createHoldReader(redis: Redis, key: string) {
  let cached: { at: number; value: string | null } | null = null;
  return async (): Promise<string | null> => {
    if (cached && Date.now() - cached.at < 500) return cached.value;
    const raw = await redis.get(key);
    let value: string | null = null;
    if (raw) {
      try {
        value = (JSON.parse(raw) as { message?: string }).message ?? 'downloads are held';
      } catch {
        value = 'downloads are held';
      }
    }
    cached = { at: Date.now(), value };
    return value;
  };
}

/**
 * One access line per request instead of Fastify's two: "incoming request" only at debug (on a
 * busy api it doubled the cost of logging, and the completion line with the same reqId makes
 * it redundant), and the completion line carries the request (method, url, client address).
 */
class AccessLog extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    if (this.isLogDisabled(request)) return;
    if ((request.log as unknown as Logger).isLevelEnabled('debug')) request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    if (error) reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored');
    else reply.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}

/** Two validators: queries, params and headers are coerced from strings; bodies never are. */
function validatorCompiler() {
  const strict = new Ajv({ removeAdditional: false, useDefaults: true, coerceTypes: false, allErrors: true, strict: false });
  const coercing = new Ajv({ removeAdditional: false, useDefaults: true, coerceTypes: 'array', allErrors: true, strict: false });
  addFormats(strict);
  addFormats(coercing);
  return ({ schema, httpPart }: { schema: object; httpPart?: string }) =>
    (httpPart === 'body' ? strict : coercing).compile(schema);
}

function trustProxy(value: string): boolean | string {
  if (value === 'false' || value === '') return false;
  if (value === 'true') return true;
  return value;
}

/**
 * Builds the api without listening, so tests drive it with `app.inject()`.
 * Everything it opens (SQLite, Redis, queues) is closed by `app.close()`.
 */
export async function buildApp(deps: ApiDependencies): Promise<FastifyInstance> {
  const { config } = deps;
  const mediaRoot = resolve(config.MEDIA_ROOT);
  mkdirSync(mediaRoot, { recursive: true });

  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger as FastifyBaseLogger } : { logger: loggerOptions({ name: 'api', level: config.LOG_LEVEL }) }),
    trustProxy: trustProxy(config.TRUST_PROXY),
    bodyLimit: config.BODY_LIMIT_BYTES,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    requestIdHeader: 'x-request-id',
    logController: new AccessLog(),
  });
  app.setValidatorCompiler(validatorCompiler());
  // The API speaks JSON only: Fastify's built-in text/plain parser would let a text body reach
  // validation (400) instead of the clear 415 UNSUPPORTED_MEDIA_TYPE.
  app.removeContentTypeParser('text/plain');

  // close() drops idle keep-alive connections, but one whose request was in flight stays open
  // after its answer and holds server.close() (and so shutdown) until keepAliveTimeout:
  // answers sent while closing end their connection.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing) void reply.header('connection', 'close');
    return payload;
  });

  const metrics = deps.metrics ?? createMetrics({ service: 'api' });
  let db: Database | null = null;
  let redis: Redis | null = null;
  let groupCommit: GroupCommit | null = null;
  app.addHook('onClose', async () => {
    groupCommit?.flush();
    await stageQueues?.close().catch((err: unknown) => app.log.warn({ err }, 'closing queues failed'));
    if (redis) await closeRedis(redis);
    closeDatabase(db);
  });

  db = openDatabase(config.DB_PATH);
  const repos = {
    jobs: createJobsRepository(db),
    events: createEventsRepository(db),
    outbox: createOutboxRepository(db),
    auth: createAuthRepository(db),
  };
  redis = createRedisConnection(config.REDIS_URL, 'producer', { logger: app.log });
  const keys = gatewayKeys(config.gatewayKeyPrefix);
  const stageQueues = createStageQueues({
    connection: redis,
    prefix: config.queuePrefix,
    retries: { download: config.MAX_RETRIES_DOWNLOAD, dub: config.MAX_RETRIES_DUB, mux: config.MAX_RETRIES_MUX },
    backoffDelayMs: config.STAGE_BACKOFF_MS,
    logger: app.log,
  });
  const publisher = createEventPublisher(redis);
  const commits = createGroupCommit(db, { onCommit: groupCommitMetrics(metrics) });
  groupCommit = commits;
  const delivery = createOutboxDelivery({
    store: groupCommittedOutbox(repos.outbox, commits),
    stageQueues,
    publisher,
    pipeline: () => redis!.pipeline(),
    logger: app.log,
    ownership: { redis, ownerKey: keys.jobOwnerKey },
  });

  app.decorate('generatedAdminPassword', await ensureAdmin(repos.auth, config, app.log));

  const jobsCreated = metrics.counter({ name: 'jobs_created_total', help: 'Jobs accepted by the API' });
  const jobs = createJobsService({
    ...repos,
    stageQueues,
    delivery,
    mediaRoot,
    allowPrivateUrls: config.ALLOW_PRIVATE_URLS,
    log: app.log,
    onJobCreated: () => jobsCreated.inc(),
    downloadsHeld: createHoldReader(redis, keys.downloadsHeldKey),
    groupCommit: commits,
    maxPendingCreates: config.API_MAX_PENDING_CREATES,
    failpoint: config.DUBGATE_FAILPOINT,
  });

  // Realtime nodes never read SQLite: a key refuses new connections, a message closes live ones.
  async function publishRevocation(sessionId: string, expiresAt: Date) {
    const ttlMs = Math.max(1_000, expiresAt.getTime() - Date.now());
    await redis!.set(keys.revokedSessionKey(sessionId), '1', 'PX', ttlMs);
    await redis!.publish(SESSION_REVOKED_CHANNEL, sessionId);
  }
  async function publishUserDisabled(userId: string) {
    await redis!.set(keys.userDisabledKey(userId), '1');
    await redis!.publish(USER_DISABLED_CHANNEL, userId);
  }
  async function clearUserDisabled(userId: string) {
    await redis!.del(keys.userDisabledKey(userId));
  }

  await app.register(errorsPlugin);
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'dubgate API', version: '0.1.0', description: 'Video download and dubbing gateway' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'Login JWT or API token (dgt_…)' },
          cookie: { type: 'apiKey', in: 'cookie', name: 'dubgate_session', description: 'Needs x-csrf-token on state-changing requests' },
        },
      },
      security: [{ bearer: [] }, { cookie: [] }],
    },
  });
  await app.register(authPlugin, { secret: config.JWT_SECRET, sessionTtlSeconds: config.SESSION_TTL_SECONDS, auth: repos.auth });
  await app.register(observabilityRoutes, {
    metrics,
    stageQueues,
    mediaRoot,
    checks: {
      redis: () => pingWithTimeout(redis!, 1_000),
      sqlite: () => db!.prepare('SELECT 1').pluck().get() === 1,
      filesystem: () => mediaRootWritable(mediaRoot),
    },
  });
  await app.register(jobsRoutes, { jobs });
  await app.register(authRoutes, {
    auth: repos.auth,
    sessionTtlSeconds: config.SESSION_TTL_SECONDS,
    cookieSecure: config.COOKIE_SECURE,
    loginMaxPerClient: config.LOGIN_MAX_PER_CLIENT,
    loginMaxPerUsername: config.LOGIN_MAX_PER_USERNAME,
    publishRevocation,
  });
  await app.register(usersRoutes, { auth: repos.auth, onUserDisabled: publishUserDisabled, onUserEnabled: clearUserDisabled });
  app.get('/api/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());

  return app;
}
