// Makes a short sample video (test pattern, a tone, an English subtitle track) with ffmpeg and
// serves it over HTTP (with Range support) so you can try the whole pipeline on one machine.
//
//   node scripts/sample-video.mjs [--port 8000] [--seconds 8]
// Prints the URL to submit. The api and the download worker must allow private addresses
// (ALLOW_PRIVATE_URLS=true) to fetch from 127.0.0.1.
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '8000' }, seconds: { type: 'string', default: '8' } } });
const seconds = Number(values.seconds);
const dir = join(process.cwd(), 'data', 'samples');
mkdirSync(dir, { recursive: true });
const srt = join(dir, 'sample.srt');
const lines = ['Hello, and welcome.', 'This is a test pattern.', 'It plays a steady tone.', 'Thank you for watching.'];
const ts = (t) => new Date(t * 1000).toISOString().slice(11, 23).replace('.', ',');
const step = seconds / lines.length;
writeFileSync(srt, lines.map((text, i) => `${i + 1}\n${ts(i * step + 0.2)} --> ${ts(i * step + step - 0.2)}\n${text}\n`).join('\n'));
const video = join(dir, 'sample.mp4');
execFileSync('ffmpeg', [
  '-y', '-v', 'error',
  '-f', 'lavfi', '-i', `testsrc=duration=${seconds}:size=640x360:rate=25`,
  '-f', 'lavfi', '-i', `sine=frequency=440:duration=${seconds}`,
  '-i', srt,
  '-map', '0:v', '-map', '1:a', '-map', '2:s',
  '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-c:s', 'mov_text',
  '-metadata:s:s:0', 'language=eng', '-shortest', video,
]);

const server = createServer((req, res) => {
  if (!req.url?.startsWith('/sample.mp4')) return res.writeHead(404).end();
  const size = statSync(video).size;
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  res.writeHead(m ? 206 : 200, {
    'content-type': 'video/mp4',
    'content-length': String(size - start),
    'accept-ranges': 'bytes',
    ...(m ? { 'content-range': `bytes ${start}-${size - 1}/${size}` } : {}),
  });
  res.end(readFileSync(video).subarray(start));
});
server.listen(Number(values.port), '127.0.0.1', () => {
  console.log(`serving ${video}\nsubmit this URL: http://127.0.0.1:${values.port}/sample.mp4   (Ctrl-C to stop)`);
});
