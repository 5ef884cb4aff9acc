#!/usr/bin/env node
// Serves apps/web/dist and proxies the API and Socket.IO, so the browser sees one origin
// (as nginx does in production). No dependencies.
//
//   API_URL=http://127.0.0.1:3000 REALTIME_URL=http://127.0.0.1:3001 PORT=8080 node apps/web/serve.mjs
import http from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { join, extname, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const DIST = process.env.WEB_DIST ?? fileURLToPath(new URL('./dist/', import.meta.url));
const API_URL = new URL(process.env.API_URL ?? 'http://127.0.0.1:3000');
const REALTIME_URL = new URL(process.env.REALTIME_URL ?? 'http://127.0.0.1:3001');
const PORT = Number(process.env.PORT ?? process.env.WEB_PORT ?? 8080);
const HOST = process.env.HOST ?? '127.0.0.1';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.map': 'application/json',
  '.woff2': 'font/woff2', '.txt': 'text/plain; charset=utf-8',
};

function targetFor(url) {
  if (url.startsWith('/socket.io/')) return REALTIME_URL;
  if (url.startsWith('/api/') || url === '/api' || url.startsWith('/healthz')) return API_URL;
  return null;
}

function forwardedHeaders(req) {
  const headers = { ...req.headers };
  headers['x-forwarded-for'] = [req.headers['x-forwarded-for'], req.socket.remoteAddress].filter(Boolean).join(', ');
  headers['x-forwarded-proto'] = 'http';
  headers['x-forwarded-host'] = req.headers.host ?? '';
  return headers;
}

function proxy(req, res, target) {
  const up = http.request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: forwardedHeaders(req) },
    (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    },
  );
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'BAD_GATEWAY', message: 'The upstream service is not reachable' } }));
  });
  req.pipe(up);
}

function serveStatic(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const file = normalize(join(DIST, path));
  let target = file.startsWith(normalize(DIST)) ? file : null;
  let st = null;
  try {
    st = target ? statSync(target) : null;
    if (st?.isDirectory()) {
      target = join(target, 'index.html');
      st = statSync(target);
    }
  } catch {
    st = null;
  }
  if (!st) {
    // The app routes with #/..., but serve index.html for unknown paths without an extension too.
    if (extname(path)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    target = join(DIST, 'index.html');
    try {
      st = statSync(target);
    } catch {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('dist/index.html is missing: run the build first');
      return;
    }
  }
  const immutable = target.includes(`${sep}assets${sep}`);
  res.writeHead(200, {
    'content-type': TYPES[extname(target)] ?? 'application/octet-stream',
    'content-length': st.size,
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
  });
  if (req.method === 'HEAD') res.end();
  else createReadStream(target).pipe(res);
}

const server = http.createServer((req, res) => {
  const target = targetFor(req.url ?? '/');
  if (target) proxy(req, res, target);
  else serveStatic(req, res);
});

// WebSocket upgrades (Socket.IO): pipe the raw sockets once the upstream answers 101.
server.on('upgrade', (req, socket, head) => {
  const target = targetFor(req.url ?? '/');
  if (!target) {
    socket.destroy();
    return;
  }
  const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: forwardedHeaders(req) });
  up.on('upgrade', (upRes, upSocket, upHead) => {
    const lines = [`HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage}`];
    for (let i = 0; i < upRes.rawHeaders.length; i += 2) lines.push(`${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (upHead?.length) socket.write(upHead);
    if (head?.length) upSocket.write(head);
    upSocket.pipe(socket).pipe(upSocket);
    upSocket.on('error', () => socket.destroy());
    socket.on('error', () => upSocket.destroy());
  });
  up.on('response', (upRes) => {
    // Refused (e.g. origin not allowed): pass the answer on and close.
    socket.end(`HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage}\r\nconnection: close\r\n\r\n`);
  });
  up.on('error', () => socket.destroy());
  up.end();
});

const close = () => server.close(() => process.exit(0)).closeAllConnections?.();
process.on('SIGTERM', close);
process.on('SIGINT', close);

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  console.log(`dubgate web on http://${HOST}:${port}/ (api ${API_URL.origin}, realtime ${REALTIME_URL.origin})`);
  process.send?.('ready');
});
