import { realpath, rm, lstat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';

/**
 * Removes a job's files. Only paths that resolve (by real path, so through any symlink)
 * strictly inside MEDIA_ROOT are touched, and a stored path only inside the job's own
 * directory (contracts: stage paths live there); anything else is reported and left alone.
 */
export interface RemovalReport {
  removed: string[];
  refused: string[];
}

async function realOrNull(path: string): Promise<string | null> {
  try {
    return await realpath(path);
  } catch {
    return null;
  }
}

function isInside(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) && !rel.split(sep).includes('..');
}

export async function removeJobMedia(mediaRoot: string, jobId: string, storedPaths: string[]): Promise<RemovalReport> {
  const report: RemovalReport = { removed: [], refused: [] };
  const root = await realOrNull(resolve(mediaRoot));
  if (!root) return report; // nothing was ever written
  // The job directory first, then any stored path left (normally inside it, so already gone).
  // A stored path may only reach into the job's own directory: one naming another job's
  // files (`<id>/../<other>/x`) must not delete them.
  const jobDir = resolve(root, jobId);
  const candidates = [jobId, ...storedPaths];
  for (const [i, candidate] of candidates.entries()) {
    if (!candidate || candidate.includes('\0')) {
      report.refused.push(String(candidate));
      continue;
    }
    const scope = i === 0 ? root : jobDir;
    const lexical = resolve(root, candidate);
    if (!isInside(scope, lexical)) {
      report.refused.push(candidate);
      continue;
    }
    let target: string | null;
    try {
      // A symlink itself may be removed when it sits inside the root; we never follow it out.
      const st = await lstat(lexical);
      target = st.isSymbolicLink() ? lexical : await realOrNull(lexical);
    } catch {
      continue; // already gone
    }
    if (!target || !isInside(scope, target)) {
      report.refused.push(candidate);
      continue;
    }
    await rm(target, { recursive: true, force: true });
    report.removed.push(relative(root, target) || join('.', candidate));
  }
  return report;
}
