/**
 * SSRF-safe GET: the URL is checked by the gateway's policy (scheme, port, credentials, host
 * names), its host is resolved once and EVERY address it resolves to must pass `ipRefusal`, the
 * connection goes to the address that was checked (so a second DNS answer cannot point it
 * elsewhere), and each redirect is checked again the same way.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { checkJobUrl, ipRefusal } from '@dubgate/runtime/url-policy';
import { PermanentError } from '@dubgate/worker-sdk/errors';

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a host name to every address it has (dns.lookup with `all: true` by default). */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

export const URL_NOT_ALLOWED = 'URL_NOT_ALLOWED';
export const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface SafeGetOptions {
  allowPrivate: boolean;
  signal: AbortSignal;
  resolver?: Resolver;
  headers?: Record<string, string>;
  /** Redirects followed at most. Default 5. */
  maxRedirects?: number;
  /** Socket inactivity (connect or body) after which the request fails (retryable). Default 60000. */
  idleTimeoutMs?: number;
  userAgent?: string;
}

export interface SafeResponse {
  response: IncomingMessage;
  /** The URL that answered (after redirects). */
  url: URL;
  /** The address connected to. */
  address: string;
  redirects: number;
}

function refuse(url: URL | string, reason: string): never {
  const shown = typeof url === 'string' ? url : `${url.protocol}//${url.host}${url.pathname}`;
  throw new PermanentError(`URL not allowed (${shown.slice(0, 300)}): ${reason}`, URL_NOT_ALLOWED);
}

/** Checks `url` and its host's addresses; returns the address to connect to. */
export async function checkTarget(url: URL, opts: Pick<SafeGetOptions, 'allowPrivate' | 'resolver'>): Promise<ResolvedAddress> {
  const verdict = checkJobUrl(url.href, { allowPrivate: opts.allowPrivate });
  if (!verdict.ok) refuse(url, verdict.reason);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const family = isIP(host);
  if (family !== 0) return { address: host, family };

  let addresses: ResolvedAddress[];
  try {
    addresses = await (opts.resolver ?? systemResolver)(host);
  } catch (err) {
    const code = (err as { code?: string }).code;
    // No such name is not going to change by retrying; a resolver hiccup may.
    if (code === 'ENOTFOUND' || code === 'ENODATA') throw new PermanentError(`the host ${host} does not exist`, 'HOST_NOT_FOUND', );
    throw err;
  }
  if (addresses.length === 0) throw new PermanentError(`the host ${host} has no address`, 'HOST_NOT_FOUND');
  // Any bad address refuses the name: otherwise a rebinding name could pick its moment.
  for (const a of addresses) {
    const refusal = ipRefusal(a.address, { allowPrivate: opts.allowPrivate });
    if (refusal) refuse(url, `${host} resolves to ${a.address}, a ${refusal}`);
  }
  return addresses[0]!;
}

/** One GET to `url`, connected to `target`; resolves on the response head. */
function requestOnce(url: URL, target: ResolvedAddress, opts: SafeGetOptions): Promise<IncomingMessage> {
  const mod = url.protocol === 'https:' ? https : http;
  // Hands back the checked address whatever the socket asks for, so no second lookup happens.
  // Host header and TLS SNI still come from the URL's host name.
  const lookup: LookupFunction = (_hostname, options, callback) => {
    if ((options as { all?: boolean }).all) {
      (callback as unknown as (err: null, addresses: ResolvedAddress[]) => void)(null, [target]);
    } else {
      callback(null, target.address, target.family);
    }
  };
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = mod.request(url, {
      method: 'GET',
      headers: {
        'user-agent': opts.userAgent ?? 'dubgate-worker-download/0.1',
        accept: '*/*',
        // Byte counts and Range offsets must be those of the file itself.
        'accept-encoding': 'identity',
        ...opts.headers,
      },
      lookup,
      // A fresh connection per request: nothing pooled outlives the stage.
      agent: false,
      signal: opts.signal,
    });
    req.setTimeout(opts.idleTimeoutMs ?? 60_000, () => {
      req.destroy(new Error(`no data from ${url.host} for ${opts.idleTimeoutMs ?? 60_000} ms`));
    });
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
}

/** Discards a response we will not read, and closes its connection. */
export function discard(response: IncomingMessage): void {
  response.resume();
  response.destroy();
}

/**
 * GET `rawUrl` following up to `maxRedirects` redirects by hand, each target checked like the
 * first. Non-http(s) redirects and too many redirects are refused (PermanentError).
 */
export async function safeGet(rawUrl: string, opts: SafeGetOptions): Promise<SafeResponse> {
  const maxRedirects = opts.maxRedirects ?? 5;
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    refuse(rawUrl, 'not a valid URL');
  }
  for (let redirects = 0; ; redirects++) {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') refuse(url, 'only http and https URLs are allowed');
    const target = await checkTarget(url, opts);
    const response = await requestOnce(url, target, opts);
    const status = response.statusCode ?? 0;
    const location = response.headers.location;
    if (!REDIRECT_STATUSES.has(status) || !location) return { response, url, address: target.address, redirects };
    discard(response);
    if (redirects >= maxRedirects) throw new PermanentError(`more than ${maxRedirects} redirects`, 'TOO_MANY_REDIRECTS');
    let next: URL;
    try {
      next = new URL(location, url);
    } catch {
      throw new PermanentError(`a redirect to an invalid URL: ${location.slice(0, 300)}`, URL_NOT_ALLOWED);
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') refuse(next, `a redirect to a ${next.protocol} URL`);
    url = next;
  }
}
