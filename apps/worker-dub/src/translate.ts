/**
 * The translation hook of the dub stage.
 *
 * Translation is OUT OF SCOPE for this reference worker: the default translator is the
 * identity, so the dubbed track speaks the subtitles' own words with a voice for the target
 * language. To plug in real translation (a local model, LibreTranslate, a cloud API), pass a
 * `Translator` to `createDubProcessor({ translate })` in `server.ts`. It is called once per cue,
 * in order, with the cue's plain text; it must be deterministic for the same input (a stage may
 * run twice and resumes re-use cues rendered before the checkpoint), and it should honour
 * `signal` so a cancel stops it. Throw `PermanentError` for input that can never be translated.
 */
export interface TranslateOptions {
  /** Source language when known (BCP 47); the reference worker does not detect it: undefined. */
  from: string | undefined;
  /** Target language (BCP 47), the job's `targetLang`. */
  to: string;
  signal?: AbortSignal;
}

export type Translator = (text: string, options: TranslateOptions) => Promise<string> | string;

/** The default: no translation. */
export const identityTranslate: Translator = (text) => text;

/** Calls the translator and normalises its answer; an empty translation keeps the original. */
export async function translate(translator: Translator, text: string, options: TranslateOptions): Promise<string> {
  const out = await translator(text, options);
  const trimmed = typeof out === 'string' ? out.replace(/\s+/g, ' ').trim() : '';
  return trimmed || text;
}
