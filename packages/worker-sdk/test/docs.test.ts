// docs/WORKERS.md quotes the contracts' examples and the SDK example unchanged, and its links resolve.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EXAMPLES } from '@dubgate/contracts/examples';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const docPath = join(root, 'docs/WORKERS.md');
const doc = readFileSync(docPath, 'utf8');

/** `<!-- example: NAME -->` followed by a fenced block: [NAME, block text]. */
function quoted(): Array<[string, string]> {
  return [...doc.matchAll(/<!-- example: (\S+) -->\n```\w*\n([\s\S]*?)```\n/g)].map((m) => [m[1]!, m[2]!]);
}

describe('docs/WORKERS.md', () => {
  it('quotes every worker-contract example from contracts exactly', () => {
    const blocks = quoted().filter(([name]) => name.includes('.schema.json#'));
    expect(blocks.length).toBeGreaterThanOrEqual(14);
    for (const [name, text] of blocks) {
      const [file, index] = name.split('#') as [string, string];
      const expected = EXAMPLES[file]?.valid[Number(index)];
      expect(expected, name).toBeDefined();
      expect(JSON.parse(text), name).toEqual(expected);
    }
    const files = new Set(blocks.map(([name]) => name.split('#')[0]));
    for (const f of ['download-payload', 'download-result', 'dub-payload', 'dub-result', 'dub-checkpoint', 'mux-payload', 'mux-result', 'cancel-signal', 'events-progress', 'events-log', 'events-error']) {
      expect(files).toContain(`${f}.schema.json`);
    }
  });

  it('shows the SDK example exactly as it compiles in test/fixtures', () => {
    const [[name, text]] = quoted().filter(([n]) => n.endsWith('.ts')) as [[string, string]];
    // The fixture imports the SDK's source (it is typechecked before the SDK is built).
    const fixture = readFileSync(join(root, name), 'utf8').replace("from '../../src/index.js'; // in a worker: from '@dubgate/worker-sdk'", "from '@dubgate/worker-sdk';");
    expect(text).toBe(fixture);
  });

  it('links only to files that exist', () => {
    const links = [...doc.matchAll(/\]\((\.\.\/[^)#]+)\)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(10);
    for (const link of links) expect(existsSync(resolve(dirname(docPath), link)), link).toBe(true);
  });

  it('names the queues, the prefix and the channels', () => {
    for (const text of ['`q:download:wait`', 'prefix="q"', '`control:cancel`', '`events:progress`', '`events:log`', '`events:error`', 'PERMANENT:', 'UnrecoverableError', 'cuesDone', '.part']) {
      expect(doc).toContain(text);
    }
  });
});
