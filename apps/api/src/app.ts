import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { pingWithTimeout } from '@dubgate/queues/connections';
import { gatewayKeys } from '@dubgate/queues/names';
import { createMetrics, type Metrics } from '@dubgate/runtime/metrics';
import { loggerOptions } from '@dubgate/runtime/logger';
import type { ApiConfig } from './config.js';
import errorsPlugin from './plugins/errors.js';
import authPlugin from './plugins/auth.js';
import jobsRoutes from './routes/jobs.js';
import authRoutes from './routes/auth.js';
import usersRoutes from './routes/users.js';
import observabilityRoutes, { mediaRootWritable } from './routes/observability.js';
import sqlitePlugin from './plugins/sqlite.js';
import redisPlugin from './plugins/redis.js';
import stageQueuesPlugin from './plugins/stage-queues.js';
import jobsServicePlugin from './plugins/jobs-service.js';
import { createRevocations } from './services/revocations.js';
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
 * Everything it opens (SQLite, Redis, queues) is closed by `app.close()`, or before it throws
 * when the start fails: each resource is a plugin under plugins/ with its own onClose.
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
  try {
    await registerAll(app, config, metrics, mediaRoot);
  } catch (err) {
    // A start that fails part way still releases what the plugins loaded so far had opened:
    // each one's onClose runs, even if another's throws.
    await app.close().catch((closeErr: unknown) => app.log.warn({ err: closeErr }, 'closing after a failed start failed'));
    throw err;
  }
  return app;
}

/**
 * Resources first (each plugin closes what it opened), then what is served on top of them.
 * Plugins close in the reverse order: Redis after SQLite, so the writes the last flush commits
 * can still be delivered.
 */
async function registerAll(app: FastifyInstance, config: ApiConfig, metrics: Metrics, mediaRoot: string): Promise<void> {
  await app.register(redisPlugin, { url: config.REDIS_URL });
  await app.register(sqlitePlugin, { dbPath: config.DB_PATH, metrics });
  await app.register(stageQueuesPlugin, { config });
  await app.register(jobsServicePlugin, { config, metrics, mediaRoot });
  app.decorate('generatedAdminPassword', await ensureAdmin(app.repos.auth, config, app.log));
  await registerRoutes(app, config, metrics, mediaRoot);
}

async function registerRoutes(app: FastifyInstance, config: ApiConfig, metrics: Metrics, mediaRoot: string): Promise<void> {
  const { db, redis, repos, stageQueues } = app;
  const revocations = createRevocations(redis, gatewayKeys(config.gatewayKeyPrefix));
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
      redis: () => pingWithTimeout(redis, 1_000),
      sqlite: () => db.prepare('SELECT 1').pluck().get() === 1,
      filesystem: () => mediaRootWritable(mediaRoot),
    },
  });
  await app.register(jobsRoutes, { jobs: app.jobs });
  await app.register(authRoutes, {
    auth: repos.auth,
    sessionTtlSeconds: config.SESSION_TTL_SECONDS,
    cookieSecure: config.COOKIE_SECURE,
    loginMaxPerClient: config.LOGIN_MAX_PER_CLIENT,
    loginMaxPerUsername: config.LOGIN_MAX_PER_USERNAME,
    publishRevocation: revocations.publishRevocation,
  });
  await app.register(usersRoutes, { auth: repos.auth, onUserDisabled: revocations.publishUserDisabled, onUserEnabled: revocations.clearUserDisabled });

  app.get('/api/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());
}
