import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { schemaDocuments, schemaText } from '../../src/http/schemas.js';
import { ROOT } from '../helpers/cli.js';

const dir = join(ROOT, 'schemas');

describe('schemas/', () => {
  it('holds exactly the schemas generated from the zod wire formats (run `npm run schemas` when this fails)', () => {
    const docs = schemaDocuments();
    expect(readdirSync(dir).filter((f) => f.endsWith('.json')).sort()).toEqual(Object.keys(docs).sort());
    for (const [file, doc] of Object.entries(docs)) {
      expect(readFileSync(join(dir, file), 'utf8'), `schemas/${file} is stale: run npm run schemas`).toBe(schemaText(doc));
    }
  });

  it('are valid JSON Schemas that accept real documents and refuse wrong ones', () => {
    const ajv = new Ajv2020({ strict: false });
    const load = (name: string) => ajv.compile(JSON.parse(readFileSync(join(dir, name), 'utf8')));
    const spec = load('job-spec.json');
    const good = { name: 'n', user_intent: 'do it', enumerator_type: 'csv', enumerator_config: { file_path: 'x.csv' }, worker_type: 'shell' };
    expect(spec(good), JSON.stringify(spec.errors)).toBe(true);
    expect(spec({ ...good, colour: 'blue' })).toBe(false);
    expect(spec({ name: 'n' })).toBe(false);
    const checkpoint = load('checkpoint.json');
    expect(checkpoint({ type: 'phase', data: { n: 1 } })).toBe(true);
    expect(checkpoint({ data: 1 })).toBe(false);
    const event = load('event.json');
    expect(event({ seq: 3, job_id: 1, type: 'unit', kind: 'unit', data: { unit_id: 1 }, at: '2026-01-01T00:00:00.000Z' })).toBe(true);
    expect(event({ seq: 3, job_id: 1, type: 'gossip', kind: 'x', data: null, at: 'now' })).toBe(false);
  });
});
