import { BlockList, isIP } from 'node:net';
import { MAX_URL_LENGTH } from '@dubgate/contracts/jobs';

/**
 * Which URLs a job may fetch. The WHATWG parser already normalises numeric spellings
 * (127.1, 0x7f000001, 2130706433, 0177.0.0.1) to dotted form, so we classify its result.
 * Names are checked here only by suffix; the download worker checks the address a name
 * resolves to, at fetch time and on every redirect (DNS can change after submission).
 */
export interface UrlPolicyOptions {
  /** Allow RFC 1918 / ULA / loopback / CGNAT targets, for a LAN install. Link-local and metadata stay refused. */
  allowPrivate: boolean;
}

export type UrlVerdict = { ok: true; url: URL } | { ok: false; reason: string };

// Always refused: link-local (cloud metadata lives here), unspecified, multicast, reserved, documentation.
const alwaysBlocked = new BlockList();
alwaysBlocked.addSubnet('0.0.0.0', 8, 'ipv4');
alwaysBlocked.addSubnet('169.254.0.0', 16, 'ipv4');
alwaysBlocked.addSubnet('192.0.0.0', 24, 'ipv4');
alwaysBlocked.addSubnet('192.0.2.0', 24, 'ipv4');
alwaysBlocked.addSubnet('198.18.0.0', 15, 'ipv4');
alwaysBlocked.addSubnet('198.51.100.0', 24, 'ipv4');
alwaysBlocked.addSubnet('203.0.113.0', 24, 'ipv4');
alwaysBlocked.addSubnet('224.0.0.0', 4, 'ipv4');
alwaysBlocked.addSubnet('240.0.0.0', 4, 'ipv4');
alwaysBlocked.addAddress('::', 'ipv6');
alwaysBlocked.addSubnet('fe80::', 10, 'ipv6');
alwaysBlocked.addSubnet('ff00::', 8, 'ipv6');
alwaysBlocked.addSubnet('2001:db8::', 32, 'ipv6');
alwaysBlocked.addAddress('fd00:ec2::254', 'ipv6'); // AWS IMDS over IPv6

// Refused unless the install allows private targets.
const privateRanges = new BlockList();
privateRanges.addSubnet('10.0.0.0', 8, 'ipv4');
privateRanges.addSubnet('172.16.0.0', 12, 'ipv4');
privateRanges.addSubnet('192.168.0.0', 16, 'ipv4');
privateRanges.addSubnet('100.64.0.0', 10, 'ipv4');
privateRanges.addSubnet('127.0.0.0', 8, 'ipv4');
privateRanges.addAddress('::1', 'ipv6');
privateRanges.addSubnet('fc00::', 7, 'ipv6');

const BLOCKED_NAME_SUFFIXES = ['localhost', '.localhost', '.local', '.internal', '.home.arpa', '.lan'];
const METADATA_NAMES = new Set(['metadata', 'metadata.google.internal', 'instance-data', 'instance-data.ec2.internal']);

/** Ports of services that must never be reachable through a download (cross-protocol SSRF). */
const SENSITIVE_PORTS = new Set([
  22, 23, 25, 110, 143, 445, 465, 587, 993, 995, 1433, 1521, 2375, 2376, 2379, 2380, 3306, 5432, 5672, 5984, 6379,
  6443, 8500, 9000, 9042, 9200, 9300, 10250, 11211, 15672, 25565, 27017, 4222, 1883,
]);

/** The IPv4 address embedded in an IPv6 one (mapped, NAT64, 6to4), or null. */
export function embeddedIPv4(ipv6: string): string | null {
  const groups = expandIPv6(ipv6);
  if (!groups) return null;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups as [number, number, number, number, number, number, number, number];
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated)
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && (g5 === 0xffff || g5 === 0) && (g6 !== 0 || g7 > 1)) {
    return v4(g6, g7);
  }
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return v4(g6, g7); // NAT64
  if (g0 === 0x2002) return v4(g1, g2); // 6to4
  return null;
}

function expandIPv6(address: string): number[] | null {
  let text = address;
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const parts = dotted[1]!.split('.').map(Number);
    if (parts.some((p) => p > 255)) return null;
    text = text.slice(0, -dotted[1]!.length) + `${((parts[0]! << 8) | parts[1]!).toString(16)}:${((parts[2]! << 8) | parts[3]!).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const groups = [...head, ...Array<string>(Math.max(fill, 0)).fill('0'), ...tail].map((g) => parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

/** Why an IP address may not be fetched, or null when it may. */
export function ipRefusal(address: string, opts: UrlPolicyOptions): string | null {
  const family = isIP(address);
  if (family === 0) return 'not an IP address';
  if (family === 6) {
    const inner = embeddedIPv4(address);
    if (inner) return ipRefusal(inner, opts);
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (alwaysBlocked.check(address, type)) return 'link-local, metadata, multicast or reserved address';
  if (!opts.allowPrivate && privateRanges.check(address, type)) return 'loopback or private address';
  return null;
}

/** Checks a submitted job URL. Never throws. */
export function checkJobUrl(raw: string, opts: UrlPolicyOptions): UrlVerdict {
  if (raw.length > MAX_URL_LENGTH) return { ok: false, reason: `URL longer than ${MAX_URL_LENGTH} characters` };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'not a valid URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, reason: 'only http and https URLs are allowed' };
  if (url.username || url.password) return { ok: false, reason: 'credentials in the URL are not allowed' };
  const host = url.hostname.toLowerCase();
  if (!host) return { ok: false, reason: 'the URL has no host' };

  if (url.port) {
    const port = Number(url.port);
    if (SENSITIVE_PORTS.has(port) || (port < 1024 && port !== 80 && port !== 443)) {
      return { ok: false, reason: `port ${port} is not allowed` };
    }
  }

  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare)) {
    const refusal = ipRefusal(bare, opts);
    return refusal ? { ok: false, reason: `the host is a ${refusal}` } : { ok: true, url };
  }

  const name = bare.replace(/\.$/, '');
  if (METADATA_NAMES.has(name)) return { ok: false, reason: 'metadata hosts are not allowed' };
  if (!opts.allowPrivate) {
    if (BLOCKED_NAME_SUFFIXES.some((s) => name === s.replace(/^\./, '') || name.endsWith(s))) {
      return { ok: false, reason: 'local host names are not allowed' };
    }
    if (!name.includes('.')) return { ok: false, reason: 'single-label host names are not allowed' };
  }
  return { ok: true, url };
}
