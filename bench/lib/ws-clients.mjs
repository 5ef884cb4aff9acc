// Child process of the fan-out benchmark: opens `count` official socket.io-client connections,
// each subscribed to one job, and records the lag of every `progress` event it receives
// (receive time minus the worker's timestamp; same machine, same clock) and sequence gaps.
// Talks to its parent over IPC: { ready } then, on { report }, { lags, received, gaps }.
import { io } from 'socket.io-client';

const { url, tokens, jobIds } = JSON.parse(process.argv[2]);
const sockets = [];
const lags = [];
let received = 0;
let gaps = 0;
const lastSeq = new Map();
let connected = 0;

for (let i = 0; i < tokens.length; i++) {
  const socket = io(url, { transports: ['websocket'], auth: { token: tokens[i] }, reconnection: false, forceNew: true });
  sockets.push(socket);
  socket.on('connect', () => {
    socket.emit('subscribe', [jobIds[i]], (ack) => {
      if (!ack?.results?.[0]?.accepted) process.send({ error: `subscribe refused: ${JSON.stringify(ack)}` });
      connected += 1;
      if (connected === tokens.length) process.send({ ready: true });
    });
  });
  socket.on('connect_error', (err) => process.send({ error: `connect_error: ${err.message}` }));
  socket.on('progress', (e) => {
    received += 1;
    lags.push(Date.now() - Date.parse(e.timestamp));
    if (typeof e.seq === 'number') {
      const prev = lastSeq.get(e.jobId);
      if (prev !== undefined && e.seq !== prev + 1) gaps += 1;
      lastSeq.set(e.jobId, e.seq);
    }
  });
}

process.on('message', (m) => {
  if (m.peek) {
    process.send({ peek: received });
  } else if (m.report && m.keep) {
    // report and reset, keep the sockets for the next round
    process.send({ lags: lags.splice(0), received, gaps });
    received = 0;
    gaps = 0;
  } else if (m.report) {
    process.send({ lags, received, gaps });
    for (const s of sockets) s.close();
    setTimeout(() => process.exit(0), 200);
  }
});
