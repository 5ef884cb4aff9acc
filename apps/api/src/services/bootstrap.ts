import type { AuthRepository } from '@dubgate/db/auth';
import { hashPassword, randomToken } from '../passwords.js';

/**
 * Creates the first admin when there are no users. Returns the generated password when
 * ADMIN_PASSWORD was not given (the caller prints it once), else null.
 * Two api processes starting at once: the unique username makes the second insert a no-op.
 */
export async function ensureAdmin(
  auth: AuthRepository,
  config: { ADMIN_USERNAME: string; ADMIN_PASSWORD?: string | undefined },
  log: { info(obj: object, msg?: string): void },
): Promise<string | null> {
  if (auth.countUsers() > 0) return null;
  const generated = config.ADMIN_PASSWORD ? null : randomToken(18);
  const result = auth.createUser({
    username: config.ADMIN_USERNAME,
    passwordHash: await hashPassword(config.ADMIN_PASSWORD ?? generated!),
    role: 'admin',
  });
  if (!result.ok) return null;
  log.info({ username: config.ADMIN_USERNAME }, 'created the first admin account');
  return generated;
}
