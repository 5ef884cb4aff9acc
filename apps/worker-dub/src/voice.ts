/**
 * Mapping a BCP 47 language tag to an espeak-ng voice. espeak-ng lists, for a language, the
 * voices that speak it best first (`espeak-ng --voices=<lang>`); MBROLA voices (files under
 * `mb/`) need extra packages and are skipped. The full tag is preferred when espeak-ng has it
 * (`pt-BR` → `pt-br`), else the best voice for the primary subtag (`zh` → `cmn`, `es-MX` → `es`),
 * else English with a warning. Answers are cached per process: the list never changes while it runs.
 */
import { runOrThrow, type RunChild } from './tools.js';

export interface VoiceChoice {
  /** What to pass to `espeak-ng -v`. */
  voice: string;
  /** True when espeak-ng has nothing for the language and English is used instead. */
  fallback: boolean;
}

interface VoiceRow {
  language: string;
  file: string;
  others: string[];
}

/** Parses `espeak-ng --voices=<lang>` output. */
export function parseVoiceList(lines: readonly string[]): VoiceRow[] {
  const rows: VoiceRow[] = [];
  for (const line of lines) {
    const cols = line.trim().split(/\s+/);
    // Pty Language Age/Gender VoiceName File [Other Languages...]
    if (cols.length < 5 || !/^\d+$/.test(cols[0]!)) continue;
    rows.push({
      language: cols[1]!.toLowerCase(),
      file: cols[4]!,
      others: cols.slice(5).map((o) => o.replace(/^\(/, '').toLowerCase()),
    });
  }
  return rows;
}

export function pickVoice(rows: readonly VoiceRow[], tag: string): string | null {
  const usable = rows.filter((r) => !r.file.startsWith('mb/'));
  const full = tag.toLowerCase();
  const exact = usable.find((r) => r.language === full);
  if (exact) return exact.language;
  return usable[0]?.language ?? null;
}

const cache = new Map<string, Promise<VoiceChoice>>();

/** Only for tests: forget cached answers. */
export function clearVoiceCache(): void {
  cache.clear();
}

export function resolveVoice(
  run: RunChild,
  espeak: string,
  tag: string,
): Promise<VoiceChoice> {
  const key = `${espeak}\0${tag.toLowerCase()}`;
  let found = cache.get(key);
  if (!found) {
    found = (async () => {
      const primary = tag.split('-')[0]!.toLowerCase();
      // The tag is validated by the contract (letters, digits, '-'), so it is safe as an argument.
      // Not tied to one job's signal: the answer is shared by every job that asks for this language.
      const lines = await runOrThrow(run, espeak, [`--voices=${primary}`], { signal: AbortSignal.timeout(10_000), what: 'list espeak-ng voices' });
      const voice = pickVoice(parseVoiceList(lines), tag);
      return voice ? { voice, fallback: false } : { voice: 'en', fallback: true };
    })();
    cache.set(key, found);
    // A failed lookup (cancel, a broken install) is not remembered.
    found.catch(() => cache.delete(key));
  }
  return found;
}
