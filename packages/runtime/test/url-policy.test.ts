import { describe, expect, it } from 'vitest';
import { checkJobUrl, embeddedIPv4 } from '../src/url-policy.js';

const strict = { allowPrivate: false };
const lan = { allowPrivate: true };

describe('checkJobUrl', () => {
  it.each([
    'http://127.0.0.1/v.mp4',
    'http://127.1/v.mp4',
    'http://0x7f000001/v.mp4',
    'http://2130706433/v.mp4',
    'http://0177.0.0.1/v.mp4',
    'http://[::1]/v.mp4',
    'http://[::ffff:127.0.0.1]/v.mp4',
    'http://[::ffff:7f00:1]/v.mp4',
    'http://[0:0:0:0:0:ffff:a9fe:a9fe]/latest/meta-data',
    'http://169.254.169.254/latest/meta-data/',
    'http://[fd00:ec2::254]/latest/meta-data/',
    'http://metadata.google.internal/computeMetadata/v1/',
    'http://10.0.0.5/v.mp4',
    'http://10.255.255.255/v.mp4',
    'http://172.16.0.1/v.mp4',
    'http://172.31.255.254/v.mp4',
    'http://192.168.1.10/v.mp4',
    'http://[fc00::1]/v.mp4',
    'http://[fd12:3456::1]/v.mp4',
    'http://[fe80::1]/v.mp4',
    'http://[64:ff9b::7f00:1]/v.mp4',
    'http://[2002:7f00:1::]/v.mp4',
    'http://0.0.0.0/v.mp4',
    'http://100.64.0.1/v.mp4',
    'http://localhost/v.mp4',
    'http://LOCALHOST./v.mp4',
    'http://foo.localhost/v.mp4',
    'http://nas.local/v.mp4',
    'http://intranet/v.mp4',
    'file:///etc/passwd',
    'gopher://example.com/_SET%20x',
    'ftp://example.com/v.mp4',
    'javascript:alert(1)',
    'http://example.com:6379/',
    'http://example.com:22/',
    'http://example.com:25/',
    'http://user:pass@example.com/v.mp4',
    'not a url',
    `https://example.com/${'a'.repeat(2100)}`,
  ])('refuses %s', (url) => {
    const verdict = checkJobUrl(url, strict);
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) expect(verdict.reason.length).toBeGreaterThan(0);
  });

  it.each([
    'https://www.youtube.com/watch?v=dQw4w9WgXcQ',
    'http://example.com/v.mp4',
    'https://example.com:8443/v.mp4',
    'http://93.184.216.34/v.mp4',
    'http://[2606:2800:220:1:248:1893:25c8:1946]/v.mp4',
  ])('accepts %s', (url) => {
    expect(checkJobUrl(url, strict).ok).toBe(true);
  });

  it('allows LAN and loopback targets only when configured, never metadata', () => {
    expect(checkJobUrl('http://192.168.1.10:8080/v.mp4', lan).ok).toBe(true);
    expect(checkJobUrl('http://127.0.0.1:8080/v.mp4', lan).ok).toBe(true);
    expect(checkJobUrl('http://nas.local/v.mp4', lan).ok).toBe(true);
    expect(checkJobUrl('http://169.254.169.254/', lan).ok).toBe(false);
    expect(checkJobUrl('http://[fd00:ec2::254]/', lan).ok).toBe(false);
    expect(checkJobUrl('http://127.0.0.1:6379/', lan).ok).toBe(false);
  });

  it('finds IPv4 inside mapped, NAT64 and 6to4 IPv6 addresses', () => {
    expect(embeddedIPv4('::ffff:7f00:1')).toBe('127.0.0.1');
    expect(embeddedIPv4('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(embeddedIPv4('64:ff9b::a9fe:a9fe')).toBe('169.254.169.254');
    expect(embeddedIPv4('2002:c0a8:0101::1')).toBe('192.168.1.1');
    expect(embeddedIPv4('2606:2800:220:1::1')).toBeNull();
  });
});
