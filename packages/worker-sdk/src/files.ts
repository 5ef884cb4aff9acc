import { open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Suffix of files still being written. A file with it is never a finished output. */
export const PART_SUFFIX = '.part';

/** fsync a file (or directory) by path. Directories: best effort (not every filesystem allows it). */
export async function fsyncPath(path: string, { directory = false } = {}): Promise<void> {
  let handle;
  try {
    handle = await open(path, 'r');
    await handle.sync();
  } catch (err) {
    if (!directory) throw err;
  } finally {
    await handle?.close().catch(() => {});
  }
}

/**
 * Produces `finalPath` so that it either does not exist or is complete: `produce` writes
 * `<finalPath>.part` (any earlier `.part` is removed first), which is then fsynced and renamed into
 * place (and the directory fsynced). If `produce` throws, or is aborted, the `.part` is removed and
 * the error rethrown; `finalPath` is untouched (an earlier complete file stays as it was).
 */
export async function writeAtomically(finalPath: string, produce: (tmpPath: string) => Promise<void>): Promise<void> {
  const tmp = `${finalPath}${PART_SUFFIX}`;
  await rm(tmp, { force: true });
  try {
    await produce(tmp);
    const st = await stat(tmp).catch(() => null);
    if (!st?.isFile()) throw new Error(`${tmp} was not written`);
    await fsyncPath(tmp);
    await rename(tmp, finalPath);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  await fsyncPath(dirname(finalPath), { directory: true });
}
