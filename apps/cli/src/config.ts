import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError, EXIT } from './errors.js';

/** What `dubgate login` keeps between runs. */
export interface CliConfig {
  apiUrl?: string;
  realtimeUrl?: string;
  token?: string;
  expiresAt?: string;
  username?: string;
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DUBGATE_CONFIG) return env.DUBGATE_CONFIG;
  return join(homedir(), '.config', 'dubgate', 'config.json');
}

/**
 * Reads the config file, or returns {} when there is none. Refuses a file that its group or
 * others may read or write: it holds a bearer token.
 */
export function readConfig(path: string): CliConfig {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError('CONFIG_UNREADABLE', `cannot read ${path}: ${(err as Error).message}`, EXIT.FAILURE);
  }
  if (!st.isFile()) throw new CliError('CONFIG_UNREADABLE', `${path} is not a file`, EXIT.FAILURE);
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new CliError(
      'CONFIG_INSECURE',
      `refusing to read ${path}: it is accessible by group or others (mode ${mode}); it holds a token, run \`chmod 600 ${path}\``,
      EXIT.AUTH,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CliError('CONFIG_INVALID', `${path} is not valid JSON: ${(err as Error).message}`, EXIT.FAILURE);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CliError('CONFIG_INVALID', `${path} must hold a JSON object`, EXIT.FAILURE);
  }
  const out: CliConfig = {};
  const p = parsed as Record<string, unknown>;
  for (const key of ['apiUrl', 'realtimeUrl', 'token', 'expiresAt', 'username'] as const) {
    if (typeof p[key] === 'string') out[key] = p[key];
  }
  return out;
}

/** Writes the config atomically, mode 0600, in a directory created with mode 0700. */
export function writeConfig(path: string, config: CliConfig): void {
  const dir = dirname(path);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
  const tmp = join(dir, `.config.json.${process.pid}.${Date.now()}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(config, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw err;
  }
}
