import type { Job, JobDetail, JobListResponse, LogsResponse } from './types.js';

/** An error answer of the API, as `{ error: { code, message, details? } }`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: { path: string; message: string }[] = [],
  ) {
    super(message);
  }
  /** One line for a person: the API's message and its stable code. */
  describe(): string {
    const extra = this.details.map((d) => `${d.path ? `${d.path}: ` : ''}${d.message}`).join('; ');
    return `${this.message}${extra && !this.message.includes(extra) ? ` (${extra})` : ''} [${this.code}]`;
  }
}

export interface SessionUser {
  id: string;
  username: string;
  role: string;
}

let csrfToken: string | null = null;
/** Called when the API says the session is gone (401 outside login). */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    throw new ApiError(0, 'NETWORK_ERROR', 'The server cannot be reached; check your connection and try again');
  }
  const text = await res.text();
  let json: unknown = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: string; message?: string; details?: { path: string; message: string }[] } } | null)?.error;
    const apiError = new ApiError(res.status, err?.code ?? `HTTP_${res.status}`, err?.message ?? res.statusText ?? 'Request failed', err?.details ?? []);
    if (res.status === 401 && path !== '/api/auth/login') onUnauthorized();
    throw apiError;
  }
  return json as T;
}

export const api = {
  async login(username: string, password: string): Promise<SessionUser> {
    const r = await request<{ csrfToken: string; user: SessionUser }>('POST', '/api/auth/login', { username, password });
    csrfToken = r.csrfToken;
    return r.user;
  },
  async session(): Promise<SessionUser> {
    const r = await request<{ csrfToken: string | null; user: SessionUser }>('GET', '/api/auth/session');
    csrfToken = r.csrfToken;
    return r.user;
  },
  async logout(): Promise<void> {
    try {
      await request('POST', '/api/auth/logout');
    } finally {
      csrfToken = null;
    }
  },
  listJobs(q: { status?: string; search?: string; cursor?: string | null; limit?: number }): Promise<JobListResponse> {
    const p = new URLSearchParams();
    if (q.status) p.set('status', q.status);
    if (q.search) p.set('search', q.search);
    if (q.cursor) p.set('cursor', q.cursor);
    p.set('limit', String(q.limit ?? 50));
    return request('GET', `/api/jobs?${p}`);
  },
  createJob(body: Record<string, unknown>): Promise<{ job: Job }> {
    return request('POST', '/api/jobs', body);
  },
  getJob(id: string): Promise<JobDetail> {
    return request('GET', `/api/jobs/${encodeURIComponent(id)}`);
  },
  logs(id: string, after: number, limit = 50, level?: string): Promise<LogsResponse> {
    const p = new URLSearchParams({ after: String(after), limit: String(limit) });
    if (level) p.set('level', level);
    return request('GET', `/api/jobs/${encodeURIComponent(id)}/logs?${p}`);
  },
  control(id: string, op: 'cancel' | 'retry' | 'resume'): Promise<{ job: Job }> {
    return request('POST', `/api/jobs/${encodeURIComponent(id)}/${op}`);
  },
  deleteJob(id: string): Promise<void> {
    return request('DELETE', `/api/jobs/${encodeURIComponent(id)}`);
  },
};
