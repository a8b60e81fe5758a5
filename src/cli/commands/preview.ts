import type { Command } from '../command.js';
import { intFlag } from '../command.js';
import { codeForReview } from './approve.js';
import { create, specFromFlags } from './create.js';

export const preview: Command = {
  usage: `abp preview [the same spec and flags as abp create] [--sample N]`,
  options: { ...create.options, sample: { type: 'string' } },
  async run(ctx) {
    const spec = specFromFlags(ctx);
    const app = await ctx.app();
    const sample = intFlag(ctx, 'sample', 0) ?? 5;
    const p = await app.orchestrator.preview(spec, { sample });
    if (p.approval) {
      ctx.print(
        [
          `${p.enumerator_type}: this code has not been approved, so it was not run.`,
          `code sha256: ${p.approval.code_sha256}`,
          '',
          codeForReview(p.approval),
          '',
          'The code runs only after a person approves this exact sha256: create the job, then abp approve JOB --code-sha256 HASH',
        ].join('\n'),
        p,
      );
      return;
    }
    const lines = [
      `${p.count} items from the ${p.enumerator_type} enumerator${p.skipped ? ` (${p.skipped.count} skipped)` : ''}; nothing was created.`,
      '',
      `first ${p.items.length}:`,
      ...p.items.map((item) => `  ${JSON.stringify(item)}`),
      ...(p.skipped ? ['', 'skipped:', ...p.skipped.first.slice(0, 10).map((s) => `  ${s.line !== undefined ? `line ${s.line}: ` : ''}${s.item ? `${s.item}: ` : ''}${s.reason}`)] : []),
      '',
      'first unit’s prompt:',
      p.first_prompt,
    ];
    ctx.print(lines.join('\n'), p);
  },
};
