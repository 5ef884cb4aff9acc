// The pure parts: yt-dlp format selection and progress lines, file extensions, Content-Range, ffprobe output.
import { describe, expect, it } from 'vitest';
import { FORMAT_PRESETS } from '@dubgate/contracts/jobs';
import { chooseExtension, needsExtractor, parseContentRange } from '../src/download.js';
import { parseProbe } from '../src/probe.js';
import { YTDLP_FORMATS, formatSelection, parseYtDlpProgress, pickSubtitle, ytDlpArgs } from '../src/ytdlp.js';

describe('yt-dlp', () => {
  it('maps every format preset to a -f selection', () => {
    expect(Object.keys(YTDLP_FORMATS).sort()).toEqual([...FORMAT_PRESETS].sort());
    expect(formatSelection('best')).toBe('bv*+ba/b');
    expect(formatSelection('1080p')).toBe('bv*[height<=1080]+ba/b[height<=1080]');
    expect(formatSelection('720p')).toBe('bv*[height<=720]+ba/b[height<=720]');
    expect(formatSelection('480p')).toBe('bv*[height<=480]+ba/b[height<=480]');
    expect(formatSelection('audio-only')).toBe('ba/b');
  });

  it.each([
    ['[download]  42.5% of   10.00MiB at    1.00MiB/s ETA 00:05', { percent: 42.5, totalBytes: 10 * 2 ** 20, speed: 2 ** 20, eta: 5 }],
    ['[download]  12.0% of ~  1.50GiB at  512.00KiB/s ETA 01:02:03 (frag 3/120)', { percent: 12, totalBytes: Math.round(1.5 * 2 ** 30), speed: 512 * 1024, eta: 3723 }],
    ['[download]   0.0% of   10.00MiB at  Unknown B/s ETA Unknown', { percent: 0, totalBytes: 10 * 2 ** 20, speed: null, eta: null }],
    ['[download] 100% of   10.00MiB in 00:00:05 at 1.84MiB/s', { percent: 100, totalBytes: 10 * 2 ** 20, speed: Math.round(1.84 * 2 ** 20), eta: null }],
    ['[download]  50.0% of 3.00MB at 100.00KB/s ETA 00:15', { percent: 50, totalBytes: 3e6, speed: 1e5, eta: 15 }],
  ])('parses %j', (line, expected) => {
    expect(parseYtDlpProgress(line)).toEqual(expected);
  });

  it.each(['[download] Destination: /x/source.mp4', '[youtube] abc: Downloading webpage', 'dubgate-file:/x', ''])('ignores %j', (line) => {
    expect(parseYtDlpProgress(line)).toBeNull();
  });

  it('builds its arguments: no playlist, newline progress, output template, subtitles on request, the URL last', () => {
    const args = ytDlpArgs({ url: 'https://v.example.com/watch?v=1', preset: '480p', wantSubtitles: false, maxBytes: 1000 }, '/m/j/.yt-dlp');
    expect(args).toEqual(expect.arrayContaining(['--newline', '--no-playlist', '-f', 'bv*[height<=480]+ba/b[height<=480]', '-o', '/m/j/.yt-dlp/source.%(ext)s']));
    expect(args).not.toContain('--write-subs');
    expect(args.slice(-2)).toEqual(['--', 'https://v.example.com/watch?v=1']);
  });

  it('prefers English subtitles, else the first', () => {
    expect(pickSubtitle(['source.mp4', 'source.de.srt', 'source.en.srt'])).toBe('source.en.srt');
    expect(pickSubtitle(['source.fr.srt', 'source.de.srt'])).toBe('source.de.srt');
    expect(pickSubtitle(['source.mp4'])).toBeUndefined();
  });
});

describe('download helpers', () => {
  it('chooses the extension from the URL, the content type, then ffprobe', () => {
    expect(chooseExtension(new URL('https://x.test/a/clip.MKV?x=1'), 'video/mp4', undefined)).toBe('mkv');
    expect(chooseExtension(new URL('https://x.test/get?id=3'), 'video/webm', undefined)).toBe('webm');
    expect(chooseExtension(new URL('https://x.test/get.php'), 'application/octet-stream', 'mov,mp4,m4a,3gp,3g2,mj2')).toBe('mp4');
    expect(chooseExtension(new URL('https://x.test/get'), undefined, 'matroska,webm')).toBe('webm');
    expect(chooseExtension(new URL('https://x.test/get'), undefined, undefined)).toBe('bin');
  });

  it('knows which content types need an extractor', () => {
    expect(needsExtractor('text/html')).toBe(true);
    expect(needsExtractor('application/vnd.apple.mpegurl')).toBe(true);
    expect(needsExtractor('video/mp4')).toBe(false);
  });

  it('parses Content-Range', () => {
    expect(parseContentRange('bytes 100-199/200')).toEqual({ start: 100, end: 199, total: 200 });
    expect(parseContentRange('bytes */200')).toEqual({ start: -1, end: null, total: 200 });
    expect(parseContentRange('bytes 0-9/*')).toEqual({ start: 0, end: 9, total: null });
    expect(parseContentRange('items 0-9/10')).toBeNull();
  });

  it('reads ffprobe output, ignoring cover art, and refuses output without audio or video', () => {
    const json = JSON.stringify({
      streams: [
        { codec_type: 'video', codec_name: 'mjpeg', width: 600, height: 600, disposition: { attached_pic: 1 } },
        { codec_type: 'video', codec_name: 'h264', width: 1280, height: 720, disposition: { attached_pic: 0 } },
        { codec_type: 'audio', codec_name: 'aac' },
      ],
      format: { duration: '12.500000', format_name: 'mov,mp4,m4a,3gp,3g2,mj2', tags: { title: 'Test pattern' } },
    });
    expect(parseProbe(json)).toEqual({ durationSec: 12.5, width: 1280, height: 720, videoCodec: 'h264', audioCodec: 'aac', title: 'Test pattern', formatName: 'mov,mp4,m4a,3gp,3g2,mj2' });
    expect(parseProbe(JSON.stringify({ streams: [{ codec_type: 'data' }], format: {} }))).toBeNull();
    expect(parseProbe('not json')).toBeNull();
  });
});
