import { realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { PermanentError } from './errors.js';

/** Code of the PermanentError thrown for a path outside MEDIA_ROOT. */
export const PATH_NOT_ALLOWED = 'PATH_NOT_ALLOWED';

export interface MediaPaths {
  /** Absolute MEDIA_ROOT (as given, resolved; not a realpath). */
  readonly mediaRoot: string;
  /**
   * The absolute path of `rel`, a path relative to MEDIA_ROOT as found in payloads and results.
   * Refuses absolute paths, `..` segments, NUL bytes and paths that leave MEDIA_ROOT through a
   * symlink (the deepest part that exists is resolved), with a PermanentError.
   */
  resolvePath(rel: string): string;
  /** `abs` relative to MEDIA_ROOT with `/` separators, for results; throws unless it is inside. */
  relativePath(abs: string): string;
}

function refuse(path: string, why: string): never {
  throw new PermanentError(`path ${JSON.stringify(path.slice(0, 300))} is not allowed: ${why}`, PATH_NOT_ALLOWED);
}

function isInside(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** The realpath of `p`, or of its deepest existing ancestor joined with the rest. */
function realpathOfExisting(p: string): string {
  let current = p;
  const rest: string[] = [];
  for (;;) {
    try {
      const real = realpathSync(current);
      return rest.length ? resolve(real, ...rest.reverse()) : real;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      const parent = dirname(current);
      if (parent === current) return p;
      rest.push(current.slice(parent.length).replace(/^[/\\]+/, ''));
      current = parent;
    }
  }
}

export function createMediaPaths(mediaRoot: string): MediaPaths {
  if (!mediaRoot) throw new TypeError('mediaRoot must be a non-empty path');
  const root = resolve(mediaRoot);

  function rootReal(): string {
    // Resolved on use: MEDIA_ROOT may be created (or be a symlink to a volume) after start.
    try {
      return realpathSync(root);
    } catch {
      return root;
    }
  }

  return {
    mediaRoot: root,
    resolvePath(rel: string): string {
      if (typeof rel !== 'string' || rel.length === 0) refuse(String(rel), 'empty');
      if (rel.includes('\0')) refuse(rel, 'NUL byte');
      if (isAbsolute(rel) || /^[A-Za-z]:[\\/]/.test(rel) || rel.startsWith('\\')) refuse(rel, 'absolute');
      if (rel.split(/[\\/]+/).includes('..')) refuse(rel, 'parent segment');
      const abs = resolve(root, rel);
      if (!isInside(root, abs)) refuse(rel, 'outside MEDIA_ROOT');
      if (!isInside(rootReal(), realpathOfExisting(abs))) refuse(rel, 'leaves MEDIA_ROOT through a symlink');
      return abs;
    },
    relativePath(abs: string): string {
      const full = resolve(root, abs);
      const rel = relative(root, full);
      if (!rel || !isInside(root, full)) refuse(abs, 'not inside MEDIA_ROOT');
      return rel.split(sep).join('/');
    },
  };
}
