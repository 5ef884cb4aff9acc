/**
 * Writes every cross-process schema as a plain JSON Schema file under json-schema/,
 * so a worker in another language can validate against them. Run by the package build.
 */
import { mkdirSync, writeFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { schemaFiles } from './schema-catalog.js';

const outDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'json-schema');
mkdirSync(outDir, { recursive: true });
for (const name of readdirSync(outDir)) if (name.endsWith('.json')) rmSync(join(outDir, name));
for (const [file, schema] of Object.entries(schemaFiles())) {
  writeFileSync(join(outDir, file), JSON.stringify(schema, null, 2) + '\n');
}
