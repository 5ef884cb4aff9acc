// resolvePath / relativePath: nothing outside MEDIA_ROOT, not even through a symlink.
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createMediaPaths } from '../src/paths.js';
import { isPermanentError } from '../src/errors.js';
import { tempDir } from './helpers.js';

let dirs: Array<{ cleanup(): void }> = [];
afterEach(() => {
  for (const d of dirs) d.cleanup();
  dirs = [];
});

function fixture() {
  const root = tempDir('media');
  const outside = tempDir('outside');
  dirs.push(root, outside);
  mkdirSync(join(root.dir, 'job1'));
  symlinkSync(outside.dir, join(root.dir, 'job1', 'escape'));
  symlinkSync(join(root.dir, 'job1'), join(root.dir, 'alias'));
  return { root: root.dir, outside: outside.dir, paths: createMediaPaths(root.dir) };
}

function refusal(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('media paths', () => {
  it('resolves paths inside MEDIA_ROOT, existing or not', () => {
    const { root, paths } = fixture();
    expect(paths.resolvePath('job1/source.mp4')).toBe(join(root, 'job1/source.mp4'));
    expect(paths.resolvePath('job2/new/dir/file')).toBe(join(root, 'job2/new/dir/file'));
    // A symlink that stays inside is fine.
    expect(paths.resolvePath('alias/x.wav')).toBe(join(root, 'alias/x.wav'));
  });

  it.each([
    ['../etc/passwd'],
    ['job1/../../x'],
    ['/etc/passwd'],
    ['job1/escape/secret'],
    ['job1/escape'],
    [''],
    ['job1/a\0b'],
  ])('refuses %j with a PermanentError', (rel) => {
    const { paths } = fixture();
    const err = refusal(() => paths.resolvePath(rel));
    expect(isPermanentError(err)).toBe(true);
    expect(err).toMatchObject({ code: 'PATH_NOT_ALLOWED' });
  });

  it('makes absolute paths relative for results, and refuses those outside', () => {
    const { root, outside, paths } = fixture();
    expect(paths.relativePath(join(root, 'job1', 'source.mp4'))).toBe('job1/source.mp4');
    expect(isPermanentError(refusal(() => paths.relativePath(join(outside, 'x'))))).toBe(true);
    expect(isPermanentError(refusal(() => paths.relativePath(root)))).toBe(true);
  });
});
