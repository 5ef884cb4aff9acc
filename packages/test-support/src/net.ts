import net from 'node:net';

/** A TCP port that was free a moment ago (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Polls `fn` until it returns something truthy (which is returned) or `timeoutMs` passes; errors
 * thrown meanwhile count as "not yet". The timeout error names the last error or the last value
 * seen, so a failure says what the test was looking at, not only that time ran out.
 */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 30_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: { error: unknown } | { value: unknown } | undefined;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as T;
      last = { value: v };
    } catch (err) {
      last = { error: err };
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${describeLast(last)}`);
}

function describeLast(last: { error: unknown } | { value: unknown } | undefined): string {
  if (!last) return '';
  if ('error' in last) return `: last error: ${last.error instanceof Error ? last.error.message : String(last.error)}`;
  let shown: string;
  try {
    shown = JSON.stringify(last.value) ?? String(last.value);
  } catch {
    shown = String(last.value);
  }
  return `: last saw ${shown.length > 500 ? `${shown.slice(0, 500)}…` : shown}`;
}

/** A TCP port with nothing listening on it. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A "Redis" that completes the ioredis handshake (CLIENT, INFO) and then never answers anything
 * else: the hung-server case that only timeouts can bound.
 */
export async function startHungRedis(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const parsed = parseRespCommand(buf);
        if (!parsed) break;
        buf = buf.slice(parsed.consumed);
        const cmd = parsed.args[0]?.toUpperCase();
        if (cmd === 'INFO') {
          const info = '# Server\r\nredis_version:7.0.0\r\nloading:0\r\n';
          sock.write(`$${Buffer.byteLength(info)}\r\n${info}\r\n`);
        } else if (cmd === 'CLIENT' || cmd === 'SELECT') {
          sock.write('+OK\r\n');
        }
        // Anything else: silence.
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function parseRespCommand(buf: string): { args: string[]; consumed: number } | null {
  if (!buf.startsWith('*')) return null;
  const head = buf.indexOf('\r\n');
  if (head < 0) return null;
  const n = Number(buf.slice(1, head));
  let pos = head + 2;
  const args: string[] = [];
  for (let k = 0; k < n; k++) {
    if (buf[pos] !== '$') return null;
    const lenEnd = buf.indexOf('\r\n', pos);
    if (lenEnd < 0) return null;
    const len = Number(buf.slice(pos + 1, lenEnd));
    const start = lenEnd + 2;
    if (buf.length < start + len + 2) return null;
    args.push(buf.slice(start, start + len));
    pos = start + len + 2;
  }
  return { args, consumed: pos };
}

