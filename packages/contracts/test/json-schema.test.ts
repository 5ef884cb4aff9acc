import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { schemaFiles } from '../src/schema-catalog.js';
import { EXAMPLES } from '../src/examples.js';

// ajv-formats is CommonJS: under NodeNext its default export sits on `.default`.
const addFormats = addFormatsModule.default;
const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'json-schema');
const files = readdirSync(dir).filter((f) => f.endsWith('.schema.json'));
const load = (f: string) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>;

function ajv() {
  const a = new Ajv({ strict: true, allErrors: true });
  addFormats(a);
  return a;
}

describe('exported JSON Schema files', () => {
  it('are written for every schema in the catalog and match the sources', () => {
    const catalog = schemaFiles();
    expect(files.sort()).toEqual(Object.keys(catalog).sort());
    for (const f of files) expect(load(f)).toEqual(catalog[f]);
  });

  it.each(files)('%s is valid draft-07 JSON Schema with no unknown keywords', (f) => {
    const schema = load(f);
    const a = ajv();
    expect(a.validateSchema(schema), JSON.stringify(a.errors)).toBe(true);
    expect(() => a.compile(schema)).not.toThrow();
  });

  it('every schema has at least one documented example', () => {
    const missing = files.filter((f) => !EXAMPLES[f]?.valid.length);
    expect(missing).toEqual([]);
  });

  it.each(Object.entries(EXAMPLES))('%s accepts its examples and refuses its counter-examples', (f, { valid, invalid }) => {
    const validate = ajv().compile(load(f));
    for (const example of valid) expect(validate(example), `${JSON.stringify(example)}: ${JSON.stringify(validate.errors)}`).toBe(true);
    for (const example of invalid ?? []) expect(validate(example), JSON.stringify(example)).toBe(false);
  });
});
