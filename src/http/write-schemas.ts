/**
 * `npm run schemas`: writes the JSON Schemas of the wire formats into schemas/.
 * test/integration/http-schemas.test.ts fails when the committed files are stale.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../package-root.js';
import { schemaDocuments, schemaText } from './schemas.js';

const dir = join(PACKAGE_ROOT, 'schemas');
mkdirSync(dir, { recursive: true });
const docs = schemaDocuments();
for (const file of readdirSync(dir)) {
  if (file.endsWith('.json') && !(file in docs)) rmSync(join(dir, file));
}
for (const [file, doc] of Object.entries(docs)) writeFileSync(join(dir, file), schemaText(doc));
process.stderr.write(`wrote ${Object.keys(docs).length} schemas to ${dir}\n`);
