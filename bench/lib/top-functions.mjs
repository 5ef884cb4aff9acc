// Prints the top functions of a V8 .cpuprofile (from `node --cpu-prof`), by self time and by
// inclusive time (the function and everything it called; recursion counted once).
//   node bench/lib/top-functions.mjs <file.cpuprofile> [count=15]
import { readFileSync } from 'node:fs';

function keyOf(cf) {
  const url = (cf.url || '').replace(/^file:\/\//, '').replace(/.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '');
  return `${cf.functionName || '(anonymous)'} ${url ? `${url}:${cf.lineNumber + 1}` : ''}`.trim();
}

export function topFunctions(profile, count = 15) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const dt = profile.timeDeltas ?? [];
  const self = new Map();
  const inclusive = new Map();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i]);
    const d = dt[i] ?? 0;
    total += d;
    if (n.callFrame.functionName === '(idle)') idle += d;
    const key = keyOf(n.callFrame);
    self.set(key, (self.get(key) ?? 0) + d);
    // Every distinct function on the sampled stack gets the sample once.
    const seen = new Set();
    for (let id = n.id; id !== undefined; id = parent.get(id)) {
      const k = keyOf(byId.get(id).callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + d);
    }
  }
  const rank = (m) =>
    [...m.entries()]
      .filter(([fn]) => !fn.startsWith('(root)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([fn, us]) => ({ fn, selfMs: us / 1000, ms: us / 1000, pct: (100 * us) / total, busyPct: (100 * us) / Math.max(1, total - idle) }));
  return { totalMs: total / 1000, idleMs: idle / 1000, top: rank(self), inclusive: rank(inclusive) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const n = Number(process.argv[3] ?? 15);
  const { totalMs, idleMs, top, inclusive } = topFunctions(JSON.parse(readFileSync(process.argv[2], 'utf8')), n);
  console.log(`total sampled ${totalMs.toFixed(0)} ms, idle ${idleMs.toFixed(0)} ms; % of busy time`);
  console.log('self:');
  for (const t of top) console.log(`${t.busyPct.toFixed(1).padStart(5)}%  ${t.ms.toFixed(0).padStart(7)} ms  ${t.fn}`);
  console.log('inclusive:');
  for (const t of inclusive) console.log(`${t.busyPct.toFixed(1).padStart(5)}%  ${t.ms.toFixed(0).padStart(7)} ms  ${t.fn}`);
}
