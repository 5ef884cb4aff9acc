import type { Role } from '@dubgate/contracts/api';

/** Who is asking, as every route sees it. */
export interface AuthUser {
  id: string;
  username: string;
  role: Role;
  /** How the request authenticated: cookie requests need a CSRF token to change state. */
  via: 'bearer' | 'cookie' | 'api_token';
  sessionId: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthUser | null;
  }
  interface FastifyContextConfig {
    /** Routes that need no authentication (login, health, metrics, docs). */
    public?: boolean;
    /** Routes only admins may use. */
    admin?: boolean;
  }
}

export function requireUser(user: AuthUser | null): AuthUser {
  if (!user) throw new Error('route reached without authentication');
  return user;
}
