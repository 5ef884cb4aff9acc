/**
 * A realtime node: Socket.IO on its own http.Server (with /healthz and /metrics beside it), rooms
 * shared with every other node through @socket.io/redis-adapter. Stateless: who is asking comes
 * from the session JWT, whether they may comes from Redis (job owners, revocations). The relay's
 * emitter puts server events into rooms; this node only delivers them.
 *
 * The factory never listens (server.ts does), so tests build as many nodes as they like.
 */
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { Socket as NetSocket } from 'node:net';
import type { Redis } from 'ioredis';
import { Server, type DefaultEventsMap, type ExtendedError, type ServerOptions, type Socket } from 'socket.io';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import {
  AuthenticateArgsSchema,
  CLIENT_EVENT_NAMES,
  SubscribeArgsSchema,
  MAX_SUBSCRIBE_IDS,
  rooms,
  type AuthenticateAck,
  type ClientToServerEvents,
  type ServerToClientEvents,
  type SubscriptionAck,
  type WsError,
} from '@dubgate/contracts/ws';
import { SESSION_REVOKED_CHANNEL, USER_DISABLED_CHANNEL } from '@dubgate/contracts/auth';
import { fanoutChannel, parseFanoutMessage } from '@dubgate/queues/fanout';
import { ERROR_CODES, type ErrorCode } from '@dubgate/contracts/errors';
import { createRedisConnection, closeRedis, pingWithTimeout, waitForReady } from '@dubgate/queues/connections';
import { gatewayKeys } from '@dubgate/queues/names';
import { createLogger, type Logger } from '@dubgate/runtime/logger';
import { createMetrics, type Metrics } from '@dubgate/runtime/metrics';
import { buildHealthReport } from '@dubgate/runtime/health';
import { NotFoundError, toErrorBody } from '@dubgate/runtime/errors';
import { closeAll } from '@dubgate/runtime/shutdown';
import type { RealtimeConfig } from './config.js';
import { AuthError, assertNotRevoked, createTokenVerifier, handshakeCredential, type Identity } from './auth.js';
import { createMeteredAdapter } from './metered-adapter.js';
import { createRealtimeMetrics, disconnectLabel, type RealtimeMetrics, type RefusalReason } from './metrics.js';
import { createOriginPolicy } from './origins.js';
import { mayNotify, newRateState, strike, takeToken, type RateLimits, type RateState } from './rate-limit.js';
import { createSessionRegistry } from './session-registry.js';

/** The four Redis connections of a node, one role each. */
export interface RealtimeRedis {
  /** The adapter's publisher (role `adapter`). */
  adapterPub: Redis;
  /** The adapter's subscriber (role `adapter`, in subscriber mode). */
  adapterSub: Redis;
  /** Control channels: session revoked, user disabled (role `subscriber`). */
  subscriber: Redis;
  /** Lookups: job owners, revocation keys; fails fast (role `producer`). */
  producer: Redis;
}

export interface RealtimeDependencies {
  config: RealtimeConfig;
  /** pino logger; default: built from LOG_LEVEL. */
  logger?: Logger;
  metrics?: Metrics;
  /** Connections to use instead of opening them from REDIS_URL; the caller closes these. */
  redis?: Partial<RealtimeRedis>;
  /** Monotonic clock in ms (the per-socket rate limits); tests move it by hand. Default performance.now. */
  now?: () => number;
  /** Wall clock in ms (token expiry, event lag); tests move it by hand. Default Date.now. */
  clock?: () => number;
}

export interface CloseOptions {
  /** How long to wait for clients to leave after being told to reconnect elsewhere. */
  drainTimeoutMs?: number;
}

export interface RealtimeServer {
  /** Not listening: call `listen()` on it (server.ts does). */
  readonly httpServer: HttpServer;
  readonly io: RealtimeIo;
  readonly metrics: Metrics;
  readonly realtimeMetrics: RealtimeMetrics;
  readonly redis: RealtimeRedis;
  /**
   * Graceful shutdown: refuse new connections, tell every client to reconnect elsewhere and close
   * its transport (socket.io-client reconnects by itself), wait for them to leave (bounded), then
   * close Socket.IO, the adapter and the Redis connections this node opened. Safe to call twice.
   */
  close(options?: CloseOptions): Promise<void>;
  /** True once close() began. */
  readonly closing: boolean;
}

/** What a socket carries in `socket.data` (visible to fetchSockets() on other nodes). */
export interface SocketData {
  userId?: string;
  role?: 'admin' | 'user';
}

export type RealtimeIo = Server<ClientToServerEvents, ServerToClientEvents, DefaultEventsMap, SocketData>;
type RealtimeSocket = Socket<ClientToServerEvents, ServerToClientEvents, DefaultEventsMap, SocketData>;

/** Per-socket state this node keeps (never shared: another node has its own sockets). */
interface ConnState {
  identity: Identity | null;
  /** Set when a revocation arrives while the socket's keys are being read. */
  revoked: AuthError | null;
  authenticating: boolean;
  authFailures: number;
  /** Job ids this socket subscribed to; made on the first subscribe (most sockets never do). */
  jobs: Set<string> | null;
  rate: RateState;
  authTimer?: NodeJS.Timeout;
}

type Ack = (answer: unknown) => void;

/** Failed `authenticate` attempts a socket may make before it is disconnected. */
export const MAX_AUTH_ATTEMPTS = 3;
const CLIENT_EVENTS = new Set<string>(CLIENT_EVENT_NAMES);
const checkSubscribeArgs = TypeCompiler.Compile(SubscribeArgsSchema);
const checkAuthenticateArgs = TypeCompiler.Compile(AuthenticateArgsSchema);
const SUBSCRIBE_USAGE = `takes (jobIds, ack): an array of 1 to ${MAX_SUBSCRIBE_IDS} job ids, each a string of 1 to 64 characters`;

export const SHUTDOWN_NOTIFICATION = {
  type: 'server_shutdown',
  title: 'Reconnecting',
  message: 'This realtime server is shutting down; your client reconnects to another one. Subscribe again once connected.',
  severity: 'info',
} as const;

function splitAck(args: unknown[]): { ack: Ack | undefined; rest: unknown[] } {
  const last = args.at(-1);
  return typeof last === 'function' ? { ack: last as Ack, rest: args.slice(0, -1) } : { ack: undefined, rest: args };
}

function errorCodeOf(err: unknown): ErrorCode {
  return err instanceof AuthError ? err.code : 'INTERNAL_ERROR';
}

function publicMessage(err: unknown): string {
  return err instanceof AuthError ? err.message : ERROR_CODES.INTERNAL_ERROR.message;
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

export async function createRealtimeServer(deps: RealtimeDependencies): Promise<RealtimeServer> {
  const { config } = deps;
  const logger = deps.logger ?? createLogger({ name: 'realtime', level: config.LOG_LEVEL });
  const metrics = deps.metrics ?? createMetrics({ service: 'realtime' });
  const keys = gatewayKeys(config.gatewayKeyPrefix);
  const verifyToken = createTokenVerifier(config.JWT_SECRET);
  const originAllowed = createOriginPolicy(config.REALTIME_ALLOWED_ORIGINS);
  const now = deps.now ?? (() => performance.now());
  const clock = deps.clock ?? (() => Date.now());

  // Connections: the ones injected belong to the caller; the ones opened here are closed here.
  const opened: Redis[] = [];
  const open = (role: 'adapter' | 'subscriber' | 'producer', name: string): Redis => {
    const r = createRedisConnection(config.REDIS_URL, role, { logger, connectionName: `dubgate:realtime:${name}` });
    opened.push(r);
    return r;
  };
  const redis: RealtimeRedis = {
    adapterPub: deps.redis?.adapterPub ?? open('adapter', 'adapter-pub'),
    adapterSub: deps.redis?.adapterSub ?? open('adapter', 'adapter-sub'),
    subscriber: deps.redis?.subscriber ?? open('subscriber', 'control'),
    producer: deps.redis?.producer ?? open('producer', 'lookups'),
  };

  let closing = false;
  let io: RealtimeIo | undefined;
  const states = new WeakMap<RealtimeSocket, ConnState>();
  const registry = createSessionRegistry<RealtimeSocket>();
  const rateLimits: RateLimits = {
    ratePerSecond: config.REALTIME_EVENTS_PER_SECOND,
    burst: config.REALTIME_EVENT_BURST,
    maxStrikes: config.REALTIME_RATE_LIMIT_DISCONNECT,
  };
  const rt = createRealtimeMetrics(metrics, () => io?.of('/').sockets.size ?? 0, () => registry.size);

  // ---------------------------------------------------------------------------------------------
  // HTTP beside Socket.IO: /healthz and /metrics (Socket.IO answers its own path first).

  const checks = {
    redis: () => pingWithTimeout(redis.producer, 1_000),
    adapter: async () => redis.adapterSub.status === 'ready' && (await pingWithTimeout(redis.adapterPub, 1_000)),
    subscriber: () => redis.subscriber.status === 'ready',
  };

  async function handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const isGet = req.method === 'GET' || req.method === 'HEAD';
    if (isGet && path === '/healthz') {
      const { statusCode, body } = await buildHealthReport(checks, { logger });
      send(res, statusCode, 'application/json; charset=utf-8', JSON.stringify(body));
    } else if (isGet && path === '/metrics') {
      const { contentType, body } = await metrics.render();
      send(res, 200, contentType, body);
    } else {
      send(res, 404, 'application/json; charset=utf-8', JSON.stringify(toErrorBody(new NotFoundError('ROUTE_NOT_FOUND'))));
    }
  }

  const httpServer = createServer((req, res) => {
    if (closing) res.setHeader('connection', 'close');
    handleHttp(req, res).catch((err: unknown) => {
      logger.error({ err, url: req.url }, 'http request failed');
      if (!res.headersSent) send(res, 500, 'application/json; charset=utf-8', JSON.stringify(toErrorBody(err)));
      else res.destroy();
    });
  });
  // Every TCP connection (HTTP, long-polling, upgraded WebSockets), to cut what outlives the drain.
  const connections = new Set<NetSocket>();
  httpServer.on('connection', (conn: NetSocket) => {
    connections.add(conn);
    conn.once('close', () => connections.delete(conn));
  });
  httpServer.on('clientError', (err, sock) => {
    logger.debug({ err }, 'http client error');
    sock.destroy();
  });

  // ---------------------------------------------------------------------------------------------
  // Socket.IO

  const allowed = config.REALTIME_ALLOWED_ORIGINS;
  const options: Partial<ServerOptions> = {
    path: '/socket.io/',
    serveClient: false,
    maxHttpBufferSize: config.REALTIME_MAX_PAYLOAD_BYTES,
    connectTimeout: Math.max(config.REALTIME_AUTH_TIMEOUT_MS, 1_000),
    adapter: createMeteredAdapter(
      redis.adapterPub,
      redis.adapterSub,
      { key: config.REALTIME_ADAPTER_KEY },
      {
        onDelivered: (event, recipients, payload) => rt.delivered(event, recipients, payload, clock()),
        onMalformed: (err) => {
          rt.broadcastsMalformed.inc();
          logger.warn({ err }, 'dropped a malformed message on the adapter channel');
        },
      },
    ),
    // Browsers on other origins need CORS for long-polling; the origin check itself is allowRequest.
    ...(allowed.length > 0 ? { cors: { origin: allowed.includes('*') ? true : [...allowed], credentials: true } } : {}),
    allowRequest: (req, callback) => {
      if (closing) {
        rt.refuse('shutting_down');
        callback('server shutting down', false);
        return;
      }
      const origin = req.headers.origin;
      if (!originAllowed(origin, req.headers.host)) {
        rt.refuse('origin_not_allowed');
        logger.info({ origin }, 'refused a connection from an origin that is not allowed');
        callback('origin not allowed', false);
        return;
      }
      callback(null, true);
    },
  };
  const server: RealtimeIo = new Server(httpServer, options);
  io = server;
  const nsp = server.of('/');

  function emitError(socket: RealtimeSocket, code: ErrorCode, message: string = ERROR_CODES[code].message, extra: Partial<WsError> = {}) {
    socket.emit('error', { ...extra, code, message });
  }

  /** Answers through the ack when there is one, otherwise with an `error` event. */
  function refuseRequest(socket: RealtimeSocket, event: string, ack: Ack | undefined, code: ErrorCode, message: string) {
    if (!ack) {
      emitError(socket, code, message);
      return;
    }
    const error = { code, message };
    ack(event === 'subscribe' || event === 'unsubscribe' ? ({ ok: false, results: [], error } satisfies SubscriptionAck) : { ok: false, error });
  }

  /** Tells the client why, then ends the socket for good (a server-side disconnect is not retried). */
  function kick(socket: RealtimeSocket, code: ErrorCode, message?: string) {
    if (!socket.connected) return;
    logger.info({ socketId: socket.id, userId: socket.data.userId, code }, 'disconnecting socket');
    emitError(socket, code, message);
    socket.disconnect(true);
  }

  function revoke(socket: RealtimeSocket, error: AuthError) {
    const state = states.get(socket);
    if (state) state.revoked = error;
    kick(socket, error.code, error.message);
  }

  // Token expiry: one sweep a second over the registered sockets instead of a timer per socket
  // (JWT expiry is in whole seconds anyway).
  const expirySweep = setInterval(() => {
    const t = clock();
    registry.forEach((socket) => {
      const identity = states.get(socket)?.identity;
      if (!identity || identity.expiresAt > t || !socket.connected) return;
      rt.authFailures.inc({ code: 'TOKEN_EXPIRED' });
      kick(socket, 'TOKEN_EXPIRED', 'The token has expired; reconnect with a new one');
    });
  }, 1_000);
  expirySweep.unref();

  /**
   * Verifies the token and reads the revocation keys; registers the socket first, so a
   * revocation published meanwhile is seen. Throws AuthError.
   */
  async function authenticateToken(socket: RealtimeSocket, state: ConnState, token: string): Promise<Identity> {
    const identity = verifyToken(token);
    if (identity.expiresAt <= clock()) throw new AuthError('TOKEN_EXPIRED');
    state.revoked = null;
    registry.add(socket, identity.sessionId, identity.userId);
    try {
      await assertNotRevoked(redis.producer, keys, identity);
      if (state.revoked) throw state.revoked;
    } catch (err) {
      registry.remove(socket);
      throw err;
    }
    return identity;
  }

  /** An authenticated socket joins its rooms and is disconnected when its token expires. */
  function onAuthenticated(socket: RealtimeSocket, state: ConnState, identity: Identity) {
    state.identity = identity;
    socket.data.userId = identity.userId;
    socket.data.role = identity.role;
    clearTimeout(state.authTimer);
    state.authTimer = undefined;
    void socket.join(identity.role === 'admin' ? [rooms.user(identity.userId), rooms.admins] : rooms.user(identity.userId));
  }

  // Handshake: a token in auth.token, Authorization or the cookie is checked before the socket
  // connects (a bad one fails with connect_error and data { code, message }); no token at all is
  // let in, unauthenticated, to send authenticate(token) before REALTIME_AUTH_TIMEOUT_MS.
  server.use((socket, next) => {
    const state: ConnState = {
      identity: null,
      revoked: null,
      authenticating: false,
      authFailures: 0,
      jobs: null,
      rate: newRateState(rateLimits, now()),
    };
    states.set(socket, state);
    const fail = (err: unknown) => {
      const code = errorCodeOf(err);
      if (!(err instanceof AuthError)) logger.error({ err }, 'handshake failed');
      rt.authFailures.inc({ code });
      states.delete(socket);
      registry.remove(socket);
      const e: ExtendedError = new Error(publicMessage(err));
      e.data = { code, message: publicMessage(err) };
      next(e);
    };
    if (closing) {
      fail(new AuthError('SERVICE_UNAVAILABLE', 'This server is shutting down; connect to another one'));
      return;
    }
    const credential = handshakeCredential(socket.handshake);
    if (credential.kind === 'none') {
      next();
      return;
    }
    if (credential.kind === 'invalid') {
      fail(credential.error);
      return;
    }
    authenticateToken(socket, state, credential.token).then((identity) => {
      // A connection that closed while the keys were read never emits 'connection' nor
      // 'disconnect' (Socket.IO drops it): forget it here.
      if (socket.conn.readyState !== 'open') {
        registry.remove(socket);
        states.delete(socket);
      }
      state.identity = identity;
      next();
    }, fail);
  });

  // Listeners shared by every socket (Socket.IO calls them with `this` = the socket): one
  // function each for the whole node instead of a closure per socket.
  function onSocketError(this: RealtimeSocket, err: Error) {
    // A packet socket.io-parser refuses lands here (then the connection closes); without a
    // listener Node's EventEmitter would throw it.
    rt.refuse('malformed_packet');
    logger.debug({ err, socketId: this.id }, 'undecodable packet; closing the connection');
  }
  function onSocketDisconnect(this: RealtimeSocket, reason: string, description?: unknown) {
    clearTimeout(states.get(this)?.authTimer);
    registry.remove(this);
    rt.disconnects.inc({ reason: disconnectLabel(reason) });
    // Engine.IO-level garbage (below socket.io-parser).
    if (reason === 'parse error') rt.refuse('malformed_packet');
    else if (reason === 'transport error' && /payload|too large|413/i.test(String((description as { message?: string } | undefined)?.message ?? ''))) {
      rt.refuse('payload_too_large');
    }
    logger.debug({ socketId: this.id, reason }, 'socket disconnected');
  }
  function runHandler(socket: RealtimeSocket, event: string, args: unknown[], fn: (socket: RealtimeSocket, state: ConnState, args: unknown[]) => Promise<void>) {
    const state = states.get(socket);
    if (!state) return;
    fn(socket, state, args).catch((err: unknown) => {
      logger.error({ err, event, socketId: socket.id }, 'socket handler failed');
      const { ack } = splitAck(args);
      if (socket.connected) refuseRequest(socket, event, ack, 'INTERNAL_ERROR', ERROR_CODES.INTERNAL_ERROR.message);
    });
  }
  function onAuthenticateEvent(this: RealtimeSocket, ...args: unknown[]) {
    runHandler(this, 'authenticate', args, onAuthenticate);
  }
  function onSubscribeEvent(this: RealtimeSocket, ...args: unknown[]) {
    runHandler(this, 'subscribe', args, onSubscribe);
  }
  function onUnsubscribeEvent(this: RealtimeSocket, ...args: unknown[]) {
    runHandler(this, 'unsubscribe', args, onUnsubscribe);
  }

  nsp.on('connection', (socket) => {
    const state = states.get(socket);
    if (!state) {
      socket.disconnect(true);
      return;
    }

    socket.on('error', onSocketError);
    socket.on('disconnect', onSocketDisconnect);

    // Every packet from the client passes here first: rate, known event, authenticated.
    socket.use((packet, next) => {
      const event = packet[0] as unknown;
      const { ack } = splitAck(packet);
      const name = typeof event === 'string' ? event : '';
      const t = now();
      if (!takeToken(state.rate, rateLimits, t)) {
        rt.refuse('rate_limited');
        if (strike(state.rate, rateLimits, t)) {
          kick(socket, 'RATE_LIMITED', 'Too many events; disconnected');
          return;
        }
        if (ack) refuseRequest(socket, name, ack, 'RATE_LIMITED', ERROR_CODES.RATE_LIMITED.message);
        else if (mayNotify(state.rate, rateLimits, t)) emitError(socket, 'RATE_LIMITED');
        return;
      }
      if (!CLIENT_EVENTS.has(name)) {
        rt.refuse('unknown_event');
        refuseRequest(socket, name, ack, 'VALIDATION_FAILED', `Unknown event; this server accepts ${CLIENT_EVENT_NAMES.join(', ')}`);
        return;
      }
      if (name !== 'authenticate' && !state.identity) {
        rt.refuse('unauthenticated');
        refuseRequest(socket, name, ack, 'UNAUTHENTICATED', 'Authenticate first: connect with auth.token or send authenticate(token)');
        return;
      }
      next();
    });

    socket.on('authenticate', onAuthenticateEvent);
    socket.on('subscribe', onSubscribeEvent);
    socket.on('unsubscribe', onUnsubscribeEvent);

    if (state.revoked) {
      kick(socket, state.revoked.code, state.revoked.message);
      return;
    }
    if (state.identity) {
      onAuthenticated(socket, state, state.identity);
    } else {
      state.authTimer = setTimeout(() => {
        rt.authFailures.inc({ code: 'UNAUTHENTICATED' });
        kick(socket, 'UNAUTHENTICATED', `Not authenticated within ${config.REALTIME_AUTH_TIMEOUT_MS} ms`);
      }, config.REALTIME_AUTH_TIMEOUT_MS).unref();
    }
  });

  async function onAuthenticate(socket: RealtimeSocket, state: ConnState, args: unknown[]): Promise<void> {
    const { ack, rest } = splitAck(args);
    const reply = (answer: AuthenticateAck) => {
      if (ack) ack(answer);
      else if (!answer.ok && answer.error) emitError(socket, answer.error.code as ErrorCode, answer.error.message);
    };
    if (state.identity || state.authenticating) {
      rt.refuse('already_authenticated');
      reply({ ok: false, error: { code: 'VALIDATION_FAILED', message: state.identity ? 'This socket is already authenticated' : 'Authentication is in progress' } });
      return;
    }
    if (rest.length !== 1 || !checkAuthenticateArgs.Check(rest[0])) {
      rt.refuse('invalid_args');
      reply({ ok: false, error: { code: 'VALIDATION_FAILED', message: 'authenticate takes (token, ack): the session token, a string of 1 to 4096 characters' } });
      return;
    }
    state.authenticating = true;
    let identity: Identity;
    try {
      identity = await authenticateToken(socket, state, rest[0] as string);
    } catch (err) {
      const code = errorCodeOf(err);
      if (!(err instanceof AuthError)) logger.error({ err }, 'authenticate failed');
      rt.authFailures.inc({ code });
      state.authFailures += 1;
      reply({ ok: false, error: { code, message: publicMessage(err) } });
      if (state.authFailures >= MAX_AUTH_ATTEMPTS) kick(socket, code, 'Too many failed authentication attempts');
      return;
    } finally {
      state.authenticating = false;
    }
    if (!socket.connected) {
      registry.remove(socket);
      return;
    }
    onAuthenticated(socket, state, identity);
    reply({ ok: true, userId: identity.userId });
  }

  async function onSubscribe(socket: RealtimeSocket, state: ConnState, args: unknown[]): Promise<void> {
    const { ack, rest } = splitAck(args);
    if (rest.length !== 1 || !checkSubscribeArgs.Check(rest[0])) {
      rt.refuse('invalid_args');
      refuseRequest(socket, 'subscribe', ack, 'VALIDATION_FAILED', `subscribe ${SUBSCRIBE_USAGE}`);
      return;
    }
    const identity = state.identity!;
    const ids = [...new Set(rest[0] as string[])];
    const subscribed = (state.jobs ??= new Set());
    const fresh = ids.filter((id) => !subscribed.has(id));
    const owners = new Map<string, string | null>();
    if (fresh.length > 0) {
      let values: Array<string | null>;
      try {
        values = await redis.producer.mget(fresh.map((id) => keys.jobOwnerKey(id)));
      } catch (err) {
        logger.warn({ err }, 'job owner lookup failed');
        rt.refuse('unavailable', fresh.length);
        const message = 'Cannot check job ownership right now; try again shortly';
        const results = ids.map((jobId) => (subscribed.has(jobId) ? { jobId, accepted: true } : { jobId, accepted: false, code: 'SERVICE_UNAVAILABLE' }));
        if (ack) ack({ ok: false, results, error: { code: 'SERVICE_UNAVAILABLE', message } } satisfies SubscriptionAck);
        else emitError(socket, 'SERVICE_UNAVAILABLE', message);
        return;
      }
      fresh.forEach((id, i) => owners.set(id, values[i] ?? null));
    }
    if (!socket.connected) return;

    const results: SubscriptionAck['results'] = [];
    const join: string[] = [];
    for (const jobId of ids) {
      if (subscribed.has(jobId)) {
        results.push({ jobId, accepted: true });
        continue;
      }
      const owner = owners.get(jobId);
      // Someone else's job and a job that does not exist answer the same: nothing to learn here.
      if (typeof owner !== 'string' || (identity.role !== 'admin' && owner !== identity.userId)) {
        rt.refuse('job_not_found');
        results.push({ jobId, accepted: false, code: 'JOB_NOT_FOUND' });
        continue;
      }
      if (subscribed.size >= config.REALTIME_MAX_SUBSCRIPTIONS) {
        rt.refuse('too_many_subscriptions');
        results.push({ jobId, accepted: false, code: 'TOO_MANY_SUBSCRIPTIONS' });
        continue;
      }
      subscribed.add(jobId);
      join.push(rooms.job(jobId));
      results.push({ jobId, accepted: true });
    }
    if (join.length > 0) void socket.join(join);
    if (ack) {
      ack({ ok: true, results } satisfies SubscriptionAck);
    } else {
      for (const r of results) {
        if (!r.accepted) emitError(socket, r.code as ErrorCode, ERROR_CODES[r.code as ErrorCode].message, { jobId: r.jobId });
      }
    }
  }

  async function onUnsubscribe(socket: RealtimeSocket, state: ConnState, args: unknown[]): Promise<void> {
    const { ack, rest } = splitAck(args);
    if (rest.length !== 1 || !checkSubscribeArgs.Check(rest[0])) {
      rt.refuse('invalid_args');
      refuseRequest(socket, 'unsubscribe', ack, 'VALIDATION_FAILED', `unsubscribe ${SUBSCRIBE_USAGE}`);
      return;
    }
    const ids = [...new Set(rest[0] as string[])];
    for (const jobId of ids) {
      if (state.jobs?.delete(jobId)) void socket.leave(rooms.job(jobId));
    }
    // Leaving a room one is not in is a no-op, not a refusal.
    ack?.({ ok: true, results: ids.map((jobId) => ({ jobId, accepted: true })) } satisfies SubscriptionAck);
  }

  // ---------------------------------------------------------------------------------------------
  // The relay's events: batches on the fan-out channel, each event emitted to this node's sockets
  // in its rooms (other nodes get the same batch). Refused batches are counted and dropped.

  const fanout = fanoutChannel(config.REALTIME_ADAPTER_KEY);
  let lastFanoutWarning = 0;
  function deliverFanout(message: string): void {
    const parsed = parseFanoutMessage(message);
    if (!parsed.ok) {
      rt.broadcastsMalformed.inc();
      // At most one line a second: a flood of bad messages must not become a flood of logs.
      if (Date.now() - lastFanoutWarning >= 1_000) {
        lastFanoutWarning = Date.now();
        logger.warn({ reason: parsed.reason, channel: fanout }, 'dropped a malformed fan-out message');
      }
      return;
    }
    const localRooms = server.of('/').adapter.rooms;
    for (const e of parsed.events) {
      let recipients = 0;
      if (e.rooms.length === 1) recipients = localRooms.get(e.rooms[0]!)?.size ?? 0;
      else {
        const ids = new Set<string>();
        for (const room of e.rooms) for (const id of localRooms.get(room) ?? []) ids.add(id);
        recipients = ids.size;
      }
      if (recipients === 0) continue;
      // local: this node's sockets only; the adapter must not send it on to the other nodes.
      (server.local.to(e.rooms) as unknown as { emit(event: string, payload: unknown): boolean }).emit(e.event, e.payload);
      rt.delivered(e.event, recipients, e.payload, clock());
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The control connection: fan-out batches (above) and revocations (the api publishes the
  // session id on logout and the user id when disabling).

  redis.subscriber.on('message', (channel: string, message: string) => {
    if (channel === fanout) {
      deliverFanout(message);
    } else if (channel === SESSION_REVOKED_CHANNEL) {
      for (const socket of registry.bySession(message)) revoke(socket, new AuthError('SESSION_REVOKED'));
    } else if (channel === USER_DISABLED_CHANNEL) {
      for (const socket of registry.byUser(message)) revoke(socket, new AuthError('USER_DISABLED'));
    }
  });

  /** Pub/Sub is at most once: after the control connection comes back, read the keys for every socket. */
  async function recheckAll(): Promise<void> {
    const sockets = registry.all();
    for (let i = 0; i < sockets.length; i += 500) {
      const batch = sockets.slice(i, i + 500).flatMap((socket) => {
        const identity = states.get(socket)?.identity;
        return identity ? [{ socket, identity }] : [];
      });
      if (batch.length === 0) continue;
      const values = await redis.producer.mget(
        batch.flatMap(({ identity }) => [keys.revokedSessionKey(identity.sessionId), keys.userDisabledKey(identity.userId)]),
      );
      batch.forEach(({ socket }, k) => {
        if (values[2 * k]) revoke(socket, new AuthError('SESSION_REVOKED'));
        else if (values[2 * k + 1]) revoke(socket, new AuthError('USER_DISABLED'));
      });
    }
  }
  let controlWasReady = redis.subscriber.status === 'ready';
  redis.subscriber.on('ready', () => {
    if (!controlWasReady) {
      controlWasReady = true;
      return;
    }
    recheckAll().catch((err: unknown) => logger.warn({ err }, 'rechecking revocations after a reconnect failed'));
  });

  // Resolved means ready: lookups work (the producer fails fast while not connected), revocations
  // are heard, and the adapter's PSUBSCRIBE (sent when the adapter was built, on the same connection,
  // before this PING) is in place, so broadcasts arrive.
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.all([
        waitForReady(redis.producer, 5_000),
        redis.subscriber.subscribe(SESSION_REVOKED_CHANNEL, USER_DISABLED_CHANNEL, fanout),
        redis.adapterSub.ping(),
      ]),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('Redis did not confirm the subscriptions within 5 s')), 5_000);
      }),
    ]);
  } catch (err) {
    // ioredis keeps the subscriptions queued and subscribes once Redis is reachable.
    logger.warn({ err }, 'not subscribed yet; continuing (the node reports unhealthy until Redis is up)');
  } finally {
    clearTimeout(timer);
  }

  // ---------------------------------------------------------------------------------------------
  // Shutdown

  async function drain(timeoutMs: number): Promise<void> {
    for (const socket of nsp.sockets.values()) {
      socket.emit('notification', { ...SHUTDOWN_NOTIFICATION, timestamp: new Date().toISOString() });
      // Closing the transport (not socket.disconnect()) is what makes socket.io-client reconnect,
      // through the load balancer, to another node. Queued packets are flushed first.
      socket.conn.close();
    }
    // Connections that never joined the namespace are closed with the engine, right after.
    const until = Date.now() + timeoutMs;
    while (nsp.sockets.size > 0 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (nsp.sockets.size > 0) logger.warn({ remaining: nsp.sockets.size }, 'sockets still connected after the drain timeout; closing them');
  }

  let closed: Promise<void> | undefined;
  async function doClose(drainTimeoutMs: number): Promise<void> {
    closing = true;
    clearInterval(expirySweep);
    logger.info({ sockets: nsp.sockets.size, drainTimeoutMs }, 'realtime node closing');
    await closeAll([
      // No new connections; the ones open stay until drained.
      () => {
        if (httpServer.listening) httpServer.close();
      },
      () => drain(drainTimeoutMs),
      async () => {
        // Disconnects what is left, closes the adapter (unsubscribes) and the engine, and waits for
        // the http server, which waits for every TCP connection: cut those that outlived the drain
        // (a frozen client would otherwise hold a WebSocket close handshake for 30 s).
        const closingIo = server.close();
        for (const conn of connections) conn.destroy();
        await closingIo;
      },
      ...opened.map((r) => () => closeRedis(r)),
    ]);
    logger.info('realtime node closed');
  }

  return {
    httpServer,
    io: server,
    metrics,
    realtimeMetrics: rt,
    redis,
    close: (opts = {}) => (closed ??= doClose(opts.drainTimeoutMs ?? config.REALTIME_DRAIN_TIMEOUT_MS)),
    get closing() {
      return closing;
    },
  };
}
