// Child process of the connections benchmark: opens `tokens.length` official socket.io-client
// connections (websocket transport), at most `parallel` handshakes in flight, and reports
// { ready, connected, failed, ms } over IPC; on { close } it closes them and exits.
import { createHmac, randomUUID } from 'node:crypto';
import { io } from 'socket.io-client';

// Tokens are signed here (HS256, the realtime node's JWT_SECRET) so the argv stays small.
const { url, count, secret, parallel = 200 } = JSON.parse(process.argv[2]);
function sign(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ ...claims, iss: 'dubgate', aud: 'dubgate', iat: now, exp: now + 3600 })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}
const tokens = Array.from({ length: count }, () => sign({ sub: randomUUID(), sid: randomUUID(), role: 'user' }));
const sockets = [];
let next = 0;
let connected = 0;
let failed = 0;
const t0 = performance.now();
function openOne() {
  if (next >= tokens.length) return;
  const i = next++;
  const socket = io(url, { transports: ['websocket'], auth: { token: tokens[i] }, reconnection: false, forceNew: true });
  sockets.push(socket);
  socket.once('connect', () => { connected++; done(); openOne(); });
  socket.once('connect_error', () => { failed++; done(); openOne(); });
}
function done() {
  if (connected + failed === tokens.length) process.send({ ready: true, connected, failed, ms: performance.now() - t0 });
}
for (let k = 0; k < Math.min(parallel, tokens.length); k++) openOne();
process.on('message', (m) => {
  if (m.close) {
    for (const s of sockets) s.close();
    setTimeout(() => process.exit(0), 200);
  }
});
