import { parseWith } from '../domain/job-spec.js';
import { assertNever } from '../domain/errors.js';
import { writeDir } from './dir.js';
import { writeJsonl } from './jsonl.js';
import { SinkSpec, type Job, type Lines, type SinkReport } from './sink.js';
import { writeTable } from './table.js';

export { SinkSpec, type SinkReport } from './sink.js';

export function parseSinkSpec(value: unknown): SinkSpec {
  return parseWith(SinkSpec, value, 'sink');
}

export async function writeSink(spec: SinkSpec, job: Job, lines: Lines): Promise<SinkReport> {
  switch (spec.type) {
    case 'dir':
      return writeDir(spec.path, job, lines);
    case 'jsonl':
      return writeJsonl(spec.path, job, lines);
    case 'table':
      return writeTable(spec, job, lines);
    default:
      return assertNever(spec, 'sink type');
  }
}
