import { fence } from '../domain/template.js';
import type { jobDetail, ResultLine } from './views.js';

export const EXPORT_FORMATS = ['jsonl', 'json', 'csv', 'markdown'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

type Job = ReturnType<typeof jobDetail>;
type Lines = () => AsyncIterable<ResultLine>;

const CSV_FIXED = ['unit_id', 'item_id', 'status', 'attempt', 'output', 'error', 'cost_usd', 'duration_ms', 'payload'] as const;

/** RFC 4180 quoting. */
export function csvRow(values: unknown[]): string {
  return values
    .map((v) => {
      const text = v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);
      return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
    })
    .join(',');
}

/** {a: {b: 1}, c: [1]} → {"a.b": 1, "c": [1]}: nested objects become dotted columns, lists stay JSON. */
export function flatten(value: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = value;
  } else {
    out.value = value;
  }
  return out;
}

/**
 * Streams a job's results as text chunks. CSV reads the results twice: once
 * for the set of structured-output columns, once to write the rows, so
 * memory stays flat however large the job.
 */
export async function* exportResults(job: Job, lines: Lines, format: ExportFormat): AsyncGenerator<string> {
  switch (format) {
    case 'jsonl':
      for await (const line of lines()) yield `${JSON.stringify(line)}\n`;
      return;
    case 'json': {
      let first = true;
      yield '[';
      for await (const line of lines()) {
        yield `${first ? '\n' : ',\n'}${JSON.stringify(line)}`;
        first = false;
      }
      yield first ? ']\n' : '\n]\n';
      return;
    }
    case 'csv': {
      const columns = new Set<string>();
      for await (const line of lines()) {
        if (line.structured_output !== null && line.structured_output !== undefined) {
          for (const key of Object.keys(flatten(line.structured_output))) columns.add(key);
        }
      }
      const extra = [...columns].sort();
      yield `${csvRow([...CSV_FIXED, ...extra.map((c) => `output.${c}`)])}\n`;
      for await (const line of lines()) {
        const flat = line.structured_output === null || line.structured_output === undefined ? {} : flatten(line.structured_output);
        yield `${csvRow([...CSV_FIXED.map((c) => line[c]), ...extra.map((c) => flat[c])])}\n`;
      }
      return;
    }
    case 'markdown': {
      const c = job.counts;
      yield `# Results of job ${job.job_id}: ${job.name}\n\n`;
      yield `${job.status}${job.status_reason ? ` (${job.status_reason})` : ''}: ${c.succeeded} succeeded, ${c.failed} failed, ${c.cancelled} cancelled of ${job.total}; cost $${job.cost_usd.toFixed(4)}.\n\n`;
      if (job.result !== null) yield `## Result\n\n${fence(job.result, 'text')}\n\n`;
      for await (const line of lines()) {
        yield `## Unit ${line.unit_id}: ${line.item_id.replace(/\s+/g, ' ')} (${line.status})\n\n`;
        if (line.output !== null && line.output !== '') yield `${fence(line.output, 'text')}\n\n`;
        if (line.error) yield `Error: ${line.error.replace(/\s+/g, ' ')}\n\n`;
      }
      return;
    }
  }
}
