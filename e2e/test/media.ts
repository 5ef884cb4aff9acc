/**
 * Test media made with ffmpeg (test pattern, a tone, an embedded subtitle stream) and a local
 * HTTP server that serves it with Range support, optionally trickling bytes slowly.
 */
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Makes an mp4 of `seconds` with one subtitle cue per `cueEvery` seconds; returns its path. */
export function makeVideo(dir: string, name: string, seconds: number, cueEvery = 1.5): string {
  const srt = join(dir, `${name}.srt`);
  const ts = (t: number) => {
    const ms = Math.round(t * 1000);
    const p = (n: number, w = 2) => String(n).padStart(w, '0');
    return `${p(Math.floor(ms / 3_600_000))}:${p(Math.floor(ms / 60_000) % 60)}:${p(Math.floor(ms / 1000) % 60)},${p(ms % 1000, 3)}`;
  };
  const cues: string[] = [];
  for (let i = 0, t = 0.2; t + 0.8 < seconds; i++, t += cueEvery) cues.push(`${i + 1}\n${ts(t)} --> ${ts(t + 0.9)}\nHello number ${i + 1}\n`);
  writeFileSync(srt, cues.join('\n'));
  const out = join(dir, `${name}.mp4`);
  execFileSync('ffmpeg', [
    '-y', '-v', 'error',
    '-f', 'lavfi', '-i', `testsrc=duration=${seconds}:size=320x240:rate=25`,
    '-f', 'lavfi', '-i', `sine=frequency=440:duration=${seconds}`,
    '-i', srt,
    '-map', '0:v', '-map', '1:a', '-map', '2:s',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-c:s', 'mov_text',
    '-metadata:s:s:0', 'language=eng', '-shortest', out,
  ]);
  return out;
}

export function cueCount(video: string): number {
  return readFileSync(video.replace(/\.mp4$/, '.srt'), 'utf8').split('-->').length - 1;
}

export interface MediaServer {
  url(name: string): string;
  /** Bytes each request has received so far, and when its connection closed. */
  requests: Array<{ path: string; range: string | undefined; sent: number; closedAt: number | null }>;
  close(): Promise<void>;
}

/** Serves files from `dir`; `slow` files trickle `chunk` bytes every `everyMs`. */
export async function startMediaServer(dir: string, slow: { names: string[]; chunk: number; everyMs: number } = { names: [], chunk: 0, everyMs: 0 }): Promise<MediaServer & { port: number; server: Server }> {
  const requests: MediaServer['requests'] = [];
  const server = createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? '/').slice(1).split('?')[0]!);
    const file = join(dir, name);
    let size: number;
    try {
      size = statSync(file).size;
    } catch {
      res.writeHead(404).end();
      return;
    }
    const record = { path: name, range: req.headers.range, sent: 0, closedAt: null as number | null };
    requests.push(record);
    res.on('close', () => (record.closedAt = Date.now()));
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const body = readFileSync(file).subarray(start);
    const type = name.endsWith('.mp4') ? 'video/mp4' : name.endsWith('.srt') ? 'application/x-subrip' : 'application/octet-stream';
    res.writeHead(m ? 206 : 200, {
      'content-type': type,
      'content-length': String(body.length),
      'accept-ranges': 'bytes',
      ...(m ? { 'content-range': `bytes ${start}-${size - 1}/${size}` } : {}),
    });
    if (!slow.names.includes(name)) {
      record.sent = body.length;
      res.end(body);
      return;
    }
    let offset = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      const piece = body.subarray(offset, offset + slow.chunk);
      offset += piece.length;
      record.sent += piece.length;
      if (offset >= body.length) {
        clearInterval(timer);
        res.end(piece);
      } else res.write(piece);
    }, slow.everyMs);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    server,
    requests,
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Probe {
  format: { format_name: string; duration: string };
  streams: Array<{ codec_type: string; codec_name: string; tags?: Record<string, string> }>;
}

export function ffprobe(file: string): Probe {
  return JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_format', '-show_streams', '-of', 'json', file], { encoding: 'utf8' })) as Probe;
}
