/**
 * Which browser pages may open a socket. Browsers always send Origin on WebSocket and cross-origin
 * requests, and they also send the session cookie: without this check any site could open a socket
 * as the logged-in user (cross-site WebSocket hijacking). Clients without Origin are not browsers.
 */
export type OriginPolicy = (origin: string | undefined, host: string | undefined) => boolean;

const DEFAULT_PORTS: Readonly<Record<string, string>> = { 'http:': '80', 'https:': '443' };

function hostOf(origin: string): { host: string; port: string; defaultPort: string } | null {
  try {
    const url = new URL(origin);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    const defaultPort = DEFAULT_PORTS[url.protocol]!;
    // hostname keeps IPv6 brackets, as the Host header writes them.
    return { host: url.hostname.toLowerCase(), port: url.port || defaultPort, defaultPort };
  } catch {
    return null;
  }
}

/** `allowed`: exact origins, or `*` for any. Same-origin requests (Origin's host = Host) always pass. */
export function createOriginPolicy(allowed: readonly string[]): OriginPolicy {
  const any = allowed.includes('*');
  const exact = new Set(allowed.filter((o) => o !== '*').map((o) => o.toLowerCase()));
  return (origin, host) => {
    if (origin === undefined) return true;
    if (any) return true;
    if (exact.has(origin.toLowerCase())) return true;
    if (!host) return false;
    const o = hostOf(origin);
    if (!o) return false;
    const h = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host.trim().toLowerCase());
    if (!h) return false;
    return h[1] === o.host && (h[2] ?? o.defaultPort) === o.port;
  };
}
