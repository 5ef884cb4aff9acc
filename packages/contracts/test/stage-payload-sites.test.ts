import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Stage payloads are built in one place, the stage registry. Before it there were five copies
 * and they had drifted apart; this test keeps new copies from appearing. It reads every source
 * file of every app and package and fails on an object literal that carries the fields every
 * payload has (`workDir` with `generation`).
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Files allowed to spell payload fields out, and why. */
const ALLOWED: Record<string, string> = {
  'packages/contracts/src/stage-registry.ts': 'the registry: the one builder',
  'packages/contracts/src/stages.ts': 'the payload schemas themselves',
  'packages/contracts/src/examples.ts': 'fixed examples, checked against the JSON Schemas',
};

const SOURCE = /\.(ts|tsx|mts|cts|js|mjs|cjs)$/;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name === 'node_modules' || e.name === 'dist') return [];
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return SOURCE.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

function srcDirs(): string[] {
  return ['apps', 'packages'].flatMap((top) =>
    readdirSync(join(root, top), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(root, top, e.name, 'src'))
      .filter((d) => existsSync(d)),
  );
}

/** Index just past the string or template literal starting at `i` (`${}` inside is skipped whole). */
function skipString(src: string, i: number): number {
  const quote = src[i];
  for (let j = i + 1; j < src.length; j++) {
    if (src[j] === '\\') j++;
    else if (src[j] === quote) return j + 1;
    else if (quote !== '`' && src[j] === '\n') return j; // unterminated: give up on the line
  }
  return src.length;
}

/** The property keys (plain and shorthand) of every `{ ... }` block, with the line it opens on. */
function objectKeys(src: string): Array<{ line: number; keys: Set<string> }> {
  const out: Array<{ line: number; keys: Set<string> }> = [];
  const stack: Array<{ start: number; keys: Set<string>; expectKey: boolean }> = [];
  const lineOf = (i: number) => src.slice(0, i).split('\n').length;
  let i = 0;
  while (i < src.length) {
    const ch = src[i]!;
    const top = stack.at(-1);
    if (ch === '/' && src[i + 1] === '/') {
      const end = src.indexOf('\n', i);
      i = end < 0 ? src.length : end;
    } else if (ch === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      i = end < 0 ? src.length : end + 2;
    } else if (ch === '"' || ch === "'" || ch === '`') {
      i = skipString(src, i);
      if (top) top.expectKey = false;
    } else if (ch === '{') {
      stack.push({ start: i, keys: new Set(), expectKey: true });
      i++;
    } else if (ch === '}') {
      const block = stack.pop();
      if (block) out.push({ line: lineOf(block.start), keys: block.keys });
      const outer = stack.at(-1);
      if (outer) outer.expectKey = false;
      i++;
    } else if (/[A-Za-z_$]/.test(ch)) {
      const name = /^[A-Za-z_$][\w$]*/.exec(src.slice(i, i + 100))![0];
      i += name.length;
      const after = /^\s*(.)/.exec(src.slice(i, i + 200))?.[1];
      if (top?.expectKey && (after === ':' || after === ',' || after === '}')) top.keys.add(name);
      if (top) top.expectKey = false;
    } else {
      if (top && ch === ',') top.expectKey = true;
      else if (top && !/\s/.test(ch)) top.expectKey = false;
      i++;
    }
  }
  return out;
}

/** Lines where a stage payload is spelled out by hand. */
function payloadSites(src: string): number[] {
  return objectKeys(src)
    .filter((b) => b.keys.has('workDir') && b.keys.has('generation'))
    .map((b) => b.line)
    .sort((a, b) => a - b);
}

describe('stage payloads are built only by the stage registry', () => {
  it('finds hand-built payloads in the shapes the old copies had', () => {
    const samples = [
      `const download: DownloadPayload = {\n  jobId: job.id,\n  generation: 0,\n  workDir: job.id,\n  url: job.url,\n};`,
      `next(job, generation, { jobId: job.id, generation, workDir: job.id, mediaPath: r.mediaPath }, 'mux');`,
      `const common = { jobId: job.id, generation: job.generation, workDir: job.id };`,
      `outbox: [{ kind: 'enqueue', payload: { stage: 'dub', payload: { jobId, generation, workDir, targetLang: \`\${x}\` } } }]`,
      `// a comment first { workDir: 1 }\nconst p = { workDir: job.id, /* x */ url: 'https://a/{b', generation: g };`,
    ];
    for (const s of samples) expect(payloadSites(s), s).toHaveLength(1);
  });

  it('leaves types and unrelated objects alone', () => {
    const samples = [
      `interface Ctx {\n  workDir: string;\n  generation: number;\n}`,
      `const ctx = { workDir, signal, payload: { generation: 1 } };`,
      `log.info({ generation: job.generation, dir: 'workDir' });`,
    ];
    for (const s of samples) expect(payloadSites(s), s).toEqual([]);
  });

  it('no source file outside the registry builds a stage payload', () => {
    const files = srcDirs().flatMap(sourceFiles);
    expect(files.length).toBeGreaterThan(50);
    const found: string[] = [];
    for (const file of files) {
      const rel = relative(root, file).split(sep).join('/');
      if (ALLOWED[rel]) continue;
      for (const line of payloadSites(readFileSync(file, 'utf8'))) found.push(`${rel}:${line}`);
    }
    // Build it with stageEnqueue / firstStageEnqueue / completeStage from @dubgate/contracts/stage-registry.
    expect(found).toEqual([]);
  });

  it('the allow-listed files exist (a rename must update the list)', () => {
    for (const rel of Object.keys(ALLOWED)) expect(existsSync(join(root, rel)), rel).toBe(true);
  });
});
