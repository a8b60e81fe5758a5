import { createWriteStream } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import type { Job, Lines, SinkReport } from './sink.js';

/** Every unit's result line, written to a temporary file and renamed over the target: a re-run replaces it whole. */
export async function writeJsonl(path: string, _job: Job, lines: Lines): Promise<SinkReport> {
  const target = resolve(path);
  await mkdir(dirname(target), { recursive: true });
  const temp = `${target}.${process.pid}.tmp`;
  const out = createWriteStream(temp);
  let written = 0;
  for await (const line of lines()) {
    if (!out.write(`${JSON.stringify(line)}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
    written++;
  }
  out.end();
  await finished(out);
  await rename(temp, target);
  return { sink: 'jsonl', target, written, skipped: 0 };
}
