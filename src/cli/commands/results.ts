import { UNIT_STATES } from '../../domain/states.js';
import type { ResultLine } from '../../orchestrator/views.js';
import type { Command } from '../command.js';
import { enumFlag, jobIdArg, usage } from '../command.js';
import { csvRow } from '../format.js';

const FORMATS = ['jsonl', 'json', 'csv'] as const;
const CSV_COLUMNS = ['unit_id', 'item_id', 'status', 'attempt', 'output', 'error', 'cost_usd', 'duration_ms', 'payload'] as const;

function write(text: string): Promise<void> {
  return new Promise((resolve) => (process.stdout.write(text) ? resolve() : process.stdout.once('drain', resolve)));
}

export const results: Command = {
  name: 'results',
  summary: 'Print every unit’s outcome, streamed: JSON Lines (default), a JSON array, or CSV.',
  usage: 'abp results JOB [--format jsonl|json|csv] [--status STATE[,STATE]]',
  options: { format: { type: 'string' }, status: { type: 'string', multiple: true } },
  async run(ctx) {
    const id = jobIdArg(ctx);
    const format = (ctx.values.format as string | undefined) ?? (ctx.json ? 'json' : 'jsonl');
    if (!(FORMATS as readonly string[]).includes(format)) throw usage(`--format: expected one of ${FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
    const app = await ctx.app();
    const lines = app.orchestrator.results(id, { status: enumFlag(ctx, 'status', UNIT_STATES) });
    let first = true;
    if (format === 'csv') await write(`${CSV_COLUMNS.join(',')}\n`);
    if (format === 'json') await write('[');
    for await (const line of lines) {
      if (format === 'jsonl') await write(`${JSON.stringify(line)}\n`);
      else if (format === 'json') await write(`${first ? '\n' : ',\n'}${JSON.stringify(line)}`);
      else await write(`${csvRow(CSV_COLUMNS.map((c) => line[c as keyof ResultLine]))}\n`);
      first = false;
    }
    if (format === 'json') await write(first ? ']\n' : '\n]\n');
  },
};
