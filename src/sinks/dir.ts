import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { AbpError } from '../domain/errors.js';
import type { Job, Lines, SinkReport } from './sink.js';

/** A file name from an item id: path segments kept, anything unsafe replaced, never outside the folder. */
export function fileNameFor(itemId: string, extension: string): string {
  const segments = itemId
    .split(/[\\/]+/)
    .map((s) => s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_'))
    .filter(Boolean);
  return `${(segments.length ? segments : ['item']).join('/')}.${extension}`;
}

/** One file per succeeded unit: the structured output as JSON when there is one, else the text output. */
export async function writeDir(path: string, _job: Job, lines: Lines): Promise<SinkReport> {
  const root = resolve(path);
  await mkdir(root, { recursive: true });
  let written = 0;
  let skipped = 0;
  const seen = new Set<string>();
  for await (const line of lines()) {
    if (line.status !== 'SUCCEEDED') {
      skipped++;
      continue;
    }
    const structured = line.structured_output !== null && line.structured_output !== undefined;
    let name = fileNameFor(line.item_id, structured ? 'json' : 'txt');
    // Two items that sanitise to the same name keep apart by unit id.
    if (seen.has(name)) name = name.replace(/(\.[a-z]+)$/, `.unit-${line.unit_id}$1`);
    seen.add(name);
    const file = join(root, name);
    if (!file.startsWith(root + sep)) throw new AbpError('invalid_input', `sink dir: item ${line.item_id} would be written outside ${root}`);
    const content = structured ? `${JSON.stringify(line.structured_output, null, 2)}\n` : (line.output ?? '');
    const existing = await readFile(file, 'utf8').catch(() => undefined);
    if (existing === content) continue;
    await mkdir(dirname(file), { recursive: true });
    await writeFile(`${file}.tmp`, content);
    await rename(`${file}.tmp`, file);
    written++;
  }
  return { sink: 'dir', target: root, written, skipped };
}
