import { CliError, EXIT, exitCodeForStatus } from './errors.js';

export interface ApiClientOptions {
  apiUrl: string;
  token?: string | undefined;
  timeoutMs?: number;
}

export interface ApiResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

/** A thin client of the public REST API: JSON in and out, errors as CliError. */
export class ApiClient {
  readonly apiUrl: string;
  token: string | undefined;
  private readonly timeoutMs: number;

  constructor(opts: ApiClientOptions) {
    this.apiUrl = opts.apiUrl.replace(/\/+$/, '');
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  async request<T>(method: string, path: string, opts: { body?: unknown; headers?: Record<string, string>; auth?: boolean } = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.auth !== false) {
      if (!this.token) {
        throw new CliError('NOT_LOGGED_IN', 'no credentials: run `dubgate login`, or pass --token / set DUBGATE_TOKEN', EXIT.AUTH);
      }
      headers.authorization = `Bearer ${this.token}`;
    }
    let res: Response;
    try {
      res = await fetch(`${this.apiUrl}${path}`, {
        method,
        headers,
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw connectionError(this.apiUrl, err);
    }
    const text = await res.text().catch(() => '');
    let body: unknown = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
    }
    if (!res.ok) {
      const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      const code = typeof e?.code === 'string' ? e.code : `HTTP_${res.status}`;
      const message = typeof e?.message === 'string' ? e.message : `${method} ${path} answered ${res.status} ${res.statusText}`;
      throw new CliError(code, message, exitCodeForStatus(res.status), res.status);
    }
    return { status: res.status, headers: res.headers, body: body as T };
  }

  async get<T>(path: string): Promise<T> {
    return (await this.request<T>('GET', path)).body;
  }

  async post<T>(path: string, body?: unknown): Promise<T> {
    return (await this.request<T>('POST', path, body === undefined ? {} : { body })).body;
  }
}

export function connectionError(url: string, err: unknown): CliError {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') {
    return new CliError('TIMEOUT', `no answer from ${url} in time`, EXIT.CONNECTION);
  }
  const why = e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
  return new CliError('CONNECTION_FAILED', `cannot reach ${url}: ${why}`, EXIT.CONNECTION);
}

/** A job id as the API accepts it in a path; anything else is a usage error before any request. */
export function jobPath(id: string, suffix = ''): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    throw new CliError('USAGE', `not a job id: ${JSON.stringify(id)}`, EXIT.USAGE);
  }
  return `/api/jobs/${id}${suffix}`;
}
