// writeAtomically: a finished file or none, never a partial one.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeAtomically } from '../src/files.js';
import { runChild } from '../src/child.js';
import { isAbortError } from '../src/errors.js';
import { tempDir } from './helpers.js';

let dirs: Array<{ cleanup(): void }> = [];
afterEach(() => {
  for (const d of dirs) d.cleanup();
  dirs = [];
});
const temp = () => {
  const d = tempDir('files');
  dirs.push(d);
  return d.dir;
};

describe('writeAtomically', () => {
  it('writes through <final>.part and renames; no .part is left', async () => {
    const dir = temp();
    const final = join(dir, 'out.wav');
    let seen = '';
    await writeAtomically(final, async (tmp) => {
      seen = tmp;
      await writeFile(tmp, 'complete');
      expect(existsSync(final)).toBe(false);
    });
    expect(seen).toBe(`${final}.part`);
    expect(readFileSync(final, 'utf8')).toBe('complete');
    expect(readdirSync(dir)).toEqual(['out.wav']);
  });

  it('removes the .part when produce fails, and leaves an earlier complete file untouched', async () => {
    const dir = temp();
    const final = join(dir, 'out.wav');
    writeFileSync(final, 'old and complete');
    writeFileSync(`${final}.part`, 'stale part from a crash');
    await expect(
      writeAtomically(final, async (tmp) => {
        expect(existsSync(tmp)).toBe(false); // the stale one was removed first
        await writeFile(tmp, 'half');
        throw new Error('encoder crashed');
      }),
    ).rejects.toThrow('encoder crashed');
    expect(readdirSync(dir)).toEqual(['out.wav']);
    expect(readFileSync(final, 'utf8')).toBe('old and complete');
  });

  it('removes the .part when a child writing it is aborted', async () => {
    const dir = temp();
    const final = join(dir, 'out.bin');
    const ac = new AbortController();
    const err = await writeAtomically(final, async (tmp) => {
      const run = runChild('sh', ['-c', `while :; do echo data >> '${tmp}'; sleep 0.01; done`], { signal: ac.signal });
      setTimeout(() => ac.abort(), 200);
      await run;
    }).catch((e: unknown) => e);
    expect(isAbortError(err)).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a produce that wrote nothing', async () => {
    const dir = temp();
    await expect(writeAtomically(join(dir, 'x'), async () => {})).rejects.toThrow(/was not written/);
    expect(readdirSync(dir)).toEqual([]);
  });
});
