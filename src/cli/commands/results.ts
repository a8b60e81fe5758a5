import { UNIT_STATES } from '../../domain/states.js';
import type { SinkReport } from '../../sinks/index.js';
import { EXPORT_FORMATS, type ExportFormat } from '../../wire/exports.js';
import type { Command } from '../command.js';
import { enumFlag, jobIdArg, usage } from '../command.js';

function write(text: string): Promise<void> {
  return new Promise((resolve) => (process.stdout.write(text) ? resolve() : process.stdout.once('drain', () => resolve())));
}

/** `dir:PATH`, `jsonl:PATH`, `table:CONNECTION#TABLE`, or a JSON sink spec. */
export function sinkFromFlag(raw: string, create: boolean): unknown {
  if (raw.trim().startsWith('{')) {
    try {
      return JSON.parse(raw);
    } catch (err) {
      throw usage(`--sink: not valid JSON: ${(err as Error).message}`);
    }
  }
  const colon = raw.indexOf(':');
  const type = raw.slice(0, colon);
  const rest = raw.slice(colon + 1);
  if (colon <= 0 || !rest) throw usage(`--sink: expected dir:PATH, jsonl:PATH or table:CONNECTION#TABLE, got ${JSON.stringify(raw)}`);
  if (type === 'table') {
    const hash = rest.lastIndexOf('#');
    if (hash <= 0) throw usage(`--sink: a table sink is table:CONNECTION#TABLE, got ${JSON.stringify(raw)}`);
    return { type, connection_string: rest.slice(0, hash), table: rest.slice(hash + 1), create };
  }
  return { type, path: rest };
}

/** A sink's report for people: its counts, then one line per unit it could not write. */
export function sinkReportText(r: SinkReport): string {
  const counts = [`${r.written} written`, ...(r.unchanged ? [`${r.unchanged} unchanged`] : []), `${r.skipped} skipped`, ...(r.failed ? [`${r.failed} failed`] : [])];
  const lines = [`${r.sink} ${r.target}: ${counts.join(', ')}`];
  for (const f of r.failures) lines.push(`  unit ${f.unit_id} (item ${JSON.stringify(f.item_id)}): ${f.reason}`);
  if (r.failed > r.failures.length) lines.push(`  … and ${r.failed - r.failures.length} more not listed`);
  return lines.join('\n');
}

export const results: Command = {
  usage: 'abp results JOB [--format jsonl|json|csv|markdown] [--status STATE[,STATE]] [--sink dir:PATH | jsonl:PATH | table:CONNECTION#TABLE [--create-table]]',
  options: { format: { type: 'string' }, status: { type: 'string', multiple: true }, sink: { type: 'string', multiple: true }, 'create-table': { type: 'boolean' } },
  async run(ctx) {
    const id = jobIdArg(ctx);
    const app = await ctx.app();
    const sinks = (ctx.values.sink as string[] | undefined) ?? [];
    if (sinks.length > 0) {
      const reports: SinkReport[] = [];
      for (const raw of sinks) reports.push(await app.orchestrator.writeSink(id, sinkFromFlag(raw, Boolean(ctx.values['create-table']))));
      ctx.print(reports.map(sinkReportText).join('\n'), reports);
      // Units that could not be written are listed in the report; stderr and the exit code say there were some.
      const failed = reports.filter((r) => r.failed > 0);
      for (const r of failed) {
        const all = r.written + r.unchanged + r.skipped + r.failed;
        process.stderr.write(`abp: ${r.failed} of ${all} unit${all === 1 ? '' : 's'} could not be written to ${r.sink} ${r.target}; the report lists each with why\n`);
      }
      return failed.length > 0 ? 1 : 0;
    }
    const format = ((ctx.values.format as string | undefined) ?? (ctx.json ? 'json' : 'jsonl')) as ExportFormat;
    if (!EXPORT_FORMATS.includes(format)) throw usage(`--format: expected one of ${EXPORT_FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
    for await (const chunk of app.orchestrator.exportResults(id, format, { status: enumFlag(ctx, 'status', UNIT_STATES) })) await write(chunk);
  },
};
