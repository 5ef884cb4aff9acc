// Prints the top self-time functions of a V8 .cpuprofile (from `node --cpu-prof`).
//   node bench/lib/top-functions.mjs <file.cpuprofile> [count=15]
import { readFileSync } from 'node:fs';

export function topFunctions(profile, count = 15) {
  const self = new Map();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const dt = profile.timeDeltas ?? [];
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i]);
    const d = dt[i] ?? 0;
    total += d;
    const cf = n.callFrame;
    const url = (cf.url || '').replace(/^file:\/\//, '').replace(/.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '');
    const key = `${cf.functionName || '(anonymous)'} ${url ? `${url}:${cf.lineNumber + 1}` : ''}`.trim();
    self.set(key, (self.get(key) ?? 0) + d);
  }
  return {
    totalMs: total / 1000,
    top: [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, count).map(([fn, us]) => ({ fn, selfMs: us / 1000, pct: (100 * us) / total })),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { totalMs, top } = topFunctions(JSON.parse(readFileSync(process.argv[2], 'utf8')), Number(process.argv[3] ?? 15));
  console.log(`total sampled ${totalMs.toFixed(0)} ms`);
  for (const t of top) console.log(`${t.pct.toFixed(1).padStart(5)}%  ${t.selfMs.toFixed(0).padStart(7)} ms  ${t.fn}`);
}
