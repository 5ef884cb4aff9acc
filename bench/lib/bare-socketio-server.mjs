// Baseline for the fan-out and connections benchmarks: a bare Socket.IO server, no middleware, no
// authentication, no adapter. Clients `subscribe` to job rooms (same ack shape as the realtime
// node); progress messages published on Redis `events:progress` are delivered with
// `io.to(room).emit` from inside this process. GET /heap answers process.memoryUsage().
// Prints its port on stdout when listening. Env: REDIS_URL (optional: without it, no feed),
// BARE_CHANNEL (default events:progress) so a benchmark can feed it apart from the relay.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { Redis } from 'ioredis';

const http = createServer((req, res) => {
  if (req.url === '/heap') {
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify(process.memoryUsage()));
  }
  if (req.url === '/healthz') return res.end('ok');
  res.statusCode = 404;
  res.end();
});
const io = new Server(http, { transports: ['websocket'], serveClient: false });
io.on('connection', (socket) => {
  socket.on('subscribe', (jobIds, ack) => {
    const ids = Array.isArray(jobIds) ? jobIds : [];
    for (const id of ids) socket.join(`job:${id}`);
    if (typeof ack === 'function') ack({ results: ids.map((jobId) => ({ jobId, accepted: true })) });
  });
});

let sub;
if (process.env.REDIS_URL) {
  sub = new Redis(process.env.REDIS_URL);
  await sub.subscribe(process.env.BARE_CHANNEL ?? 'events:progress');
  sub.on('message', (_channel, raw) => {
    const msg = JSON.parse(raw);
    const p = msg.payload;
    const out = { jobId: msg.jobId, type: p.stage, percent: p.percent, speed: p.speed ?? null, eta: p.eta ?? null, stage: p.step ?? null, timestamp: msg.timestamp };
    if (p.seq !== undefined) out.seq = p.seq;
    io.to(`job:${msg.jobId}`).emit('progress', out);
  });
}

http.listen(0, '127.0.0.1', () => process.stdout.write(`${http.address().port}\n`));
const stop = () => {
  io.close();
  sub?.disconnect();
  setTimeout(() => process.exit(0), 100).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
