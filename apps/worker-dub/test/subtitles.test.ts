import { describe, expect, it } from 'vitest';
import { cleanCueText, detectFormat, parseSubtitles, parseTimingLine } from '../src/subtitles.js';
import { TEST_SRT } from './helpers.js';

describe('parseSubtitles', () => {
  it('parses SRT with multi-line text and tags', () => {
    const cues = parseSubtitles(TEST_SRT);
    expect(cues).toHaveLength(4);
    expect(cues[0]).toEqual({ start: 0.2, end: 1, text: 'Hello world' });
    expect(cues[1]!.text).toBe('This is a test');
    const multi = parseSubtitles('1\n00:00:01,000 --> 00:00:02,500\nfirst line\n<b>second</b> line\n\n');
    expect(multi).toEqual([{ start: 1, end: 2.5, text: 'first line second line' }]);
  });

  it('parses WebVTT: header, NOTE/STYLE blocks, identifiers, settings, hours left out, voice and timestamp tags', () => {
    const vtt = [
      'WEBVTT - some title',
      '',
      'NOTE this is a comment',
      'spanning lines',
      '',
      'STYLE',
      '::cue { color: red }',
      '',
      'intro',
      '00:01.000 --> 00:02.000 align:start position:10%',
      '<v Roger>Hi <c.loud>there</c></v>',
      '',
      '00:00:03.500 --> 00:00:04.250',
      'karaoke <00:00:03.800>words &amp; more',
      '',
    ].join('\n');
    expect(detectFormat(vtt)).toBe('vtt');
    expect(parseSubtitles(vtt)).toEqual([
      { start: 1, end: 2, text: 'Hi there' },
      { start: 3.5, end: 4.25, text: 'karaoke words & more' },
    ]);
  });

  it('copes with a BOM, CRLF and CR line ends, dots in SRT timestamps, and whitespace', () => {
    const crlf = '\uFEFF1\r\n00:00:01.000 --> 00:00:02.000\r\n  Dots  and   spaces \r\n\r\n2\r\n00:00:03,000 --> 00:00:04,000\r\nnext\r\n';
    expect(detectFormat(crlf)).toBe('srt');
    expect(parseSubtitles(crlf)).toEqual([
      { start: 1, end: 2, text: 'Dots and spaces' },
      { start: 3, end: 4, text: 'next' },
    ]);
    const cr = '1\r00:00:01,000 --> 00:00:02,000\rold mac\r\r';
    expect(parseSubtitles(cr)).toEqual([{ start: 1, end: 2, text: 'old mac' }]);
  });

  it('handles missing blank lines, missing numbers, empty cues, bad timings, and sorts by start', () => {
    const messy = [
      '00:00:05,000 --> 00:00:06,000',
      'later cue without number',
      '2',
      '00:00:01,000 --> 00:00:02,000',
      'earlier, no blank line before',
      '',
      '3',
      '00:00:07,000 --> 00:00:08,000',
      '<i></i>',
      '',
      '4',
      '00:00:09,000 --> 00:00:08,000',
      'ends before it starts',
      '',
      'garbage line',
      '00:00:10,5 --> 00:00:11,25',
      '{\\an8}short ms',
    ].join('\n');
    expect(parseSubtitles(messy)).toEqual([
      { start: 1, end: 2, text: 'earlier, no blank line before' },
      { start: 5, end: 6, text: 'later cue without number' },
      { start: 10.5, end: 11.25, text: 'short ms' },
    ]);
  });

  it('parses timing lines with large hours and rejects non-timing lines', () => {
    expect(parseTimingLine('01:02:03,004 --> 101:00:00,000')).toEqual({ start: 3723.004, end: 363600 });
    expect(parseTimingLine('not --> a timing')).toBeNull();
    expect(parseTimingLine('')).toBeNull();
  });

  it('cleans text: entities, font tags, empty lines', () => {
    expect(cleanCueText(['<font color="#fff">Tom &amp; Jerry&nbsp;&#33;</font>', '', '  &lt;3 &#x263A;'])).toBe('Tom & Jerry ! <3 ☺');
    expect(cleanCueText(['&bogus; stays'])).toBe('&bogus; stays');
  });

  it('returns nothing for empty or non-subtitle input', () => {
    expect(parseSubtitles('')).toEqual([]);
    expect(parseSubtitles('WEBVTT\n\n')).toEqual([]);
    expect(parseSubtitles('just some text\nwith lines')).toEqual([]);
  });
});
