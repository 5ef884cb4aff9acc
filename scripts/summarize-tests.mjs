// Adds up the vitest JSON reports of every package and prints one closing line:
// "N passed, N failed, N skipped". Fails when a package that has tests left no report.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const roots = ['packages', 'apps'];
// Workspace packages at the top level (deploy, e2e, ...).
const single = readdirSync('.', { withFileTypes: true })
  .filter((d) => d.isDirectory() && d.name !== 'node_modules' && !d.name.startsWith('.') && existsSync(join(d.name, 'package.json')))
  .map((d) => d.name);
let passed = 0, failed = 0, skipped = 0;
const missing = [];
const dirs = [
  ...roots.filter((root) => existsSync(root)).flatMap((root) => readdirSync(root).map((name) => join(root, name))),
  ...single,
];
for (const dir of dirs) {
  if (!existsSync(join(dir, 'test'))) continue;
  const report = join(dir, '.test-results.json');
  if (!existsSync(report)) { missing.push(dir); continue; }
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed += r.numPassedTests; failed += r.numFailedTests; skipped += r.numPendingTests + (r.numTodoTests ?? 0);
  console.log(`${dir}: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
}
if (missing.length) console.log(`no test report from: ${missing.join(', ')}`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || missing.length > 0 ? 1 : 0);
