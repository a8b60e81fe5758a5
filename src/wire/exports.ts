import { fence } from '../domain/template.js';
import type { jobDetail, ResultLine } from './views.js';

export const EXPORT_FORMATS = ['jsonl', 'json', 'csv', 'markdown'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

type Job = ReturnType<typeof jobDetail>;
type Lines = () => AsyncIterable<ResultLine>;

/**
 * Where an export's lines come from: `lines` as values, and, when the source can
 * give them cheaper, `texts`: each line already as JSON.stringify would write it
 * (the store's rows, resultLineText). JSONL and JSON use texts when given.
 */
export interface ExportSource {
  lines: Lines;
  texts?: () => AsyncIterable<string>;
}

const CSV_FIXED = ['unit_id', 'item_id', 'status', 'attempt', 'output', 'error', 'cost_usd', 'duration_ms', 'payload'] as const;

/** What spreadsheets read as the start of a formula (OWASP, CSV injection): = + - @, a tab, a carriage return. */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * One CSV cell: RFC 4180 quoting, and a text value that a spreadsheet would run
 * as a formula (`=HYPERLINK(…)`, `+1+1`, `@SUM(…)`) gets a leading single quote
 * and is quoted, as OWASP advises. Only strings: a number abp writes as a number
 * (a cost, an exit code, -1) is written as it is.
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string' && FORMULA_START.test(value)) return `"'${value.replace(/"/g, '""')}"`;
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? '');
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One CSV row of cells (csvCell). */
export function csvRow(values: unknown[]): string {
  return values.map(csvCell).join(',');
}

/**
 * A field's path as one key: segments joined by ".", with "\" written "\\", "."
 * written "\." and an empty segment "\e", so two distinct paths never give the
 * same key (`{"a.b": 1}` → `a\.b`, `{"a": {"b": 1}}` → `a.b`). A structured
 * output that is not an object is the root field, key "".
 */
export function fieldKey(path: readonly string[]): string {
  return path.map((s) => (s === '' ? '\\e' : s.replace(/[\\.]/g, (c) => `\\${c}`))).join('.');
}

/** Every leaf of a structured output with its path: nested objects are walked, lists stay values. */
export function fields(value: unknown, path: string[] = [], out: Array<{ path: string[]; value: unknown }> = []): Array<{ path: string[]; value: unknown }> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) fields(v, [...path, k], out);
  } else {
    out.push({ path, value });
  }
  return out;
}

/**
 * {a: {b: 1}, c: [1]} → {"a.b": 1, "c": [1]}: nested objects become dotted keys
 * (fieldKey), lists stay JSON. The object has no prototype, so a field named
 * `__proto__` or `constructor` is a field like any other.
 */
export function flatten(value: unknown): Record<string, unknown> {
  const out = Object.create(null) as Record<string, unknown>;
  for (const f of fields(value)) out[fieldKey(f.path)] = f.value;
  return out;
}

/** A CSV export's header for a field key: `output.KEY`, or `structured_output` for an output that is not an object. */
export function csvHeader(key: string): string {
  return key === '' ? 'structured_output' : `output.${key}`;
}

/**
 * Streams a job's results as text chunks. CSV reads the results twice: once
 * for the set of structured-output columns, once to write the rows, so
 * memory stays flat however large the job.
 */
export async function* exportResults(job: Job, source: ExportSource, format: ExportFormat): AsyncGenerator<string> {
  // Lines are gathered into chunks of about 64 KiB: one write (a syscall each
  // when stdout is a file) and one await for backpressure per chunk, not per unit.
  let chunk = '';
  for await (const piece of exportPieces(job, source, format)) {
    chunk += piece;
    if (chunk.length >= CHUNK_CHARS) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

const CHUNK_CHARS = 1 << 16;

async function* jsonTexts(source: ExportSource): AsyncGenerator<string> {
  if (source.texts) yield* source.texts();
  else for await (const line of source.lines()) yield JSON.stringify(line);
}

async function* exportPieces(job: Job, source: ExportSource, format: ExportFormat): AsyncGenerator<string> {
  const lines = source.lines;
  switch (format) {
    case 'jsonl':
      for await (const text of jsonTexts(source)) yield `${text}\n`;
      return;
    case 'json': {
      let first = true;
      yield '[';
      for await (const text of jsonTexts(source)) {
        yield `${first ? '\n' : ',\n'}${text}`;
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
      yield `${csvRow([...CSV_FIXED, ...extra.map(csvHeader)])}\n`;
      for await (const line of lines()) {
        const flat = flatten(line.structured_output === null || line.structured_output === undefined ? {} : line.structured_output);
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
