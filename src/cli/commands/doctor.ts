import type { Command } from '../command.js';
import { usage } from '../command.js';

const MARK = { ok: 'ok', degraded: 'DEGRADED', down: 'DOWN', auth_failed: 'AUTH FAILED' } as const;

export const doctor: Command = {
  usage: 'abp doctor [WORKER_TYPE ...] [--json]',
  options: {},
  async run(ctx) {
    const app = await ctx.app();
    let checks = await app.orchestrator.doctor();
    if (ctx.positionals.length > 0) {
      const known = new Set(checks.map((c) => c.worker_type));
      for (const name of ctx.positionals) if (!known.has(name)) throw usage(`WORKER_TYPE: unknown worker type ${JSON.stringify(name)}; expected one of ${[...known].join(', ')}`);
      checks = checks.filter((c) => ctx.positionals.includes(c.worker_type));
    }
    const width = Math.max(...checks.map((c) => c.label.length));
    const human = checks
      .map((c) => {
        const lines = [`${c.label.padEnd(width)}  ${MARK[c.health.status].padEnd(11)}  ${c.health.details}`];
        if (c.health.features?.length) lines.push(`${' '.repeat(width)}  ${''.padEnd(11)}  features: ${c.health.features.join(', ')}`);
        for (const w of c.health.warnings ?? []) lines.push(`${' '.repeat(width)}  ${''.padEnd(11)}  warning: ${w}`);
        return lines.join('\n');
      })
      .join('\n');
    ctx.print(human, { workers: checks.map((c) => ({ worker_type: c.worker_type, label: c.label, ...c.health })) });
  },
};
