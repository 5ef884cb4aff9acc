/**
 * Subtitle parsing for the dub stage: SRT and WebVTT, tolerant of what real files contain
 * (a BOM, CRLF or CR line ends, missing or extra blank lines, missing cue numbers, commas or
 * dots before the milliseconds, hours left out, formatting tags, entities, VTT headers,
 * NOTE/STYLE/REGION blocks and cue settings).
 */

export interface Cue {
  /** Seconds from the start of the media. */
  start: number;
  /** Seconds from the start of the media; always > start. */
  end: number;
  /** Plain text: tags stripped, lines joined with a space. Never empty. */
  text: string;
}

export type SubtitleFormat = 'srt' | 'vtt';

// [hh:]mm:ss(,|.)mmm — hours optional (VTT allows it, some SRT writers do it too), 1–3 ms digits.
const TIMESTAMP = String.raw`(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?`;
const TIMING_LINE = new RegExp(String.raw`^\s*${TIMESTAMP}\s*-->\s*${TIMESTAMP}`);

function toSeconds(h: string | undefined, m: string, s: string, ms: string | undefined): number {
  // "5" after the separator means 500 ms, "05" means 50 ms: pad on the right.
  const millis = ms === undefined ? 0 : Number(ms.padEnd(3, '0'));
  return Number(h ?? 0) * 3600 + Number(m) * 60 + Number(s) + millis / 1000;
}

/** Parses one `start --> end` line, or null if the line is not one. */
export function parseTimingLine(line: string): { start: number; end: number } | null {
  const m = TIMING_LINE.exec(line);
  if (!m) return null;
  const start = toSeconds(m[1], m[2]!, m[3]!, m[4]);
  const end = toSeconds(m[5], m[6]!, m[7]!, m[8]);
  return { start, end };
}

const ENTITIES: Record<string, string> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: ' ',
  lrm: '',
  rlm: '',
};

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, name: string) => {
    if (name[0] === '#') {
      const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : '';
    }
    const decoded = ENTITIES[name.toLowerCase()];
    return decoded ?? whole;
  });
}

/** Plain text of a cue: HTML-ish tags (<i>, <font>, <c.x>, <v Name>, <00:00:01.000>), ASS overrides ({\an8}) removed. */
export function cleanCueText(lines: readonly string[]): string {
  const joined = lines
    .map((l) =>
      l
        .replace(/<[^>]*>/g, '')
        .replace(/\{\\[^}]*\}/g, '')
        .trim(),
    )
    .filter((l) => l.length > 0)
    .join(' ');
  return decodeEntities(joined).replace(/\s+/g, ' ').trim();
}

/** Guesses the format: a `WEBVTT` header, or dots before the milliseconds, mean VTT. */
export function detectFormat(text: string): SubtitleFormat {
  const body = text.replace(/^\uFEFF/, '').trimStart();
  return body.startsWith('WEBVTT') ? 'vtt' : 'srt';
}

/**
 * Parses SRT or WebVTT into cues sorted by start time. Cues without text, or whose end is
 * not after their start, are dropped. Both formats go through one tolerant block parser:
 * a block is the lines between blank lines, and its cue is the first line holding `-->`
 * followed by the text lines.
 */
export function parseSubtitles(input: string): Cue[] {
  const text = input.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
  const lines = text.split('\n');
  const cues: Cue[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    const timing = line.includes('-->') ? parseTimingLine(line) : null;
    if (!timing) {
      i++;
      continue;
    }
    // Text runs until a blank line, or until the next timing line when a writer forgot the blank
    // line (then a bare cue number just before it belongs to the next cue, not to this text).
    const body: string[] = [];
    i++;
    while (i < lines.length && lines[i]!.trim() !== '') {
      const l = lines[i]!;
      if (l.includes('-->') && parseTimingLine(l)) break;
      body.push(l);
      i++;
    }
    if (i < lines.length && lines[i]!.includes('-->') && body.length > 0 && /^\s*\d+\s*$/.test(body[body.length - 1]!)) {
      body.pop();
    }
    const cueText = cleanCueText(body);
    if (cueText && timing.end > timing.start) cues.push({ start: timing.start, end: timing.end, text: cueText });
  }
  // A stable sort keeps the file's order for cues that start together.
  return cues
    .map((c, idx) => ({ c, idx }))
    .sort((a, b) => a.c.start - b.c.start || a.idx - b.idx)
    .map(({ c }) => c);
}
