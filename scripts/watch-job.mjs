// Submits a job and watches it live over Socket.IO until it ends.
//
//   node scripts/watch-job.mjs <video URL> [--dub <lang>] [--container mkv]
//   node scripts/watch-job.mjs --job <id>            (watch an existing job)
//
// Credentials: TOKEN (a login token or API token), or ADMIN_USERNAME / ADMIN_PASSWORD.
// Addresses: API_URL (default http://127.0.0.1:3000), REALTIME_URL (default http://127.0.0.1:3001).
import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { dub: { type: 'string' }, container: { type: 'string' }, job: { type: 'string' } },
});
const apiUrl = process.env.API_URL ?? 'http://127.0.0.1:3000';
const realtimeUrl = process.env.REALTIME_URL ?? 'http://127.0.0.1:3001';
const print = (what, data) => console.log(`${new Date().toISOString().slice(11, 23)}  ${what.padEnd(12)} ${JSON.stringify(data)}`);

async function api(method, path, body, token) {
  const res = await fetch(`${apiUrl}${path}`, {
    method,
    headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${json?.error?.code ?? ''} ${json?.error?.message ?? ''}`);
  return json;
}

let token = process.env.TOKEN;
if (!token) {
  if (!process.env.ADMIN_PASSWORD) throw new Error('set TOKEN, or ADMIN_USERNAME and ADMIN_PASSWORD');
  token = (await api('POST', '/api/auth/login', { username: process.env.ADMIN_USERNAME ?? 'admin', password: process.env.ADMIN_PASSWORD })).token;
}

const socket = io(realtimeUrl, { auth: { token }, transports: ['websocket'] });
await new Promise((resolve, reject) => {
  socket.once('connect', resolve);
  socket.once('connect_error', reject);
});
print('connected', { realtimeUrl });

let jobId = values.job;
const terminal = new Set(['COMPLETE', 'FAILED', 'CANCELED']);
socket.on('job_added', (e) => print('job_added', e));
socket.on('state_change', (e) => {
  print('state_change', e);
  if (e.jobId === jobId && terminal.has(e.to)) finish(e.to);
});
socket.on('progress', (e) => print('progress', e));
socket.on('log', (e) => print('log', e));
socket.on('error', (e) => print('error', e));
socket.on('notification', (e) => print('notification', e));

if (!jobId) {
  if (!positionals[0]) throw new Error('give a video URL, or --job <id>');
  const body = { url: positionals[0] };
  if (values.dub) Object.assign(body, { requestedDubbing: true, targetLang: values.dub });
  if (values.container) body.outputContainer = values.container;
  jobId = (await api('POST', '/api/jobs', body, token)).job.id;
  print('created', { jobId });
}
const ack = await socket.timeout(5000).emitWithAck('subscribe', [jobId]);
print('subscribed', ack);

// Pub/Sub is at most once: also check the stored state, so a missed event cannot hang us.
const poll = setInterval(async () => {
  const { job } = await api('GET', `/api/jobs/${jobId}`, undefined, token);
  if (terminal.has(job.status)) finish(job.status, job);
}, 2000);

async function finish(status, job) {
  clearInterval(poll);
  job ??= (await api('GET', `/api/jobs/${jobId}`, undefined, token)).job;
  print('finished', { jobId, status, outputPath: job.outputPath, error: job.error });
  socket.close();
  process.exit(status === 'COMPLETE' ? 0 : 1);
}
