import { readFileSync } from 'node:fs';
import type { Command, CommandContext } from '../command.js';
import { cliHint } from '../hints.js';
import { intFlag, usage } from '../command.js';
import { readText } from './create.js';

/**
 * `abp sync run|plan|status`: a sync job from flags or a spec file. `run`
 * creates the job (the plan) and, with --start or --skip-test, runs it;
 * `plan` is the dry run and writes nothing.
 */

const SUBCOMMANDS = ['run', 'plan', 'status'] as const;

/** `dir:PATH`, `jsonl:PATH`, `json:PATH`, `csv:PATH`, `sqlite:PATH#TABLE`, `postgres://…#TABLE`, or a JSON object. */
export function providerArg(flag: string, raw: string): Record<string, unknown> {
  const text = raw.trim();
  if (text.startsWith('{')) {
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw usage(`--${flag}: not valid JSON: ${(err as Error).message}`);
    }
  }
  if (/^postgres(ql)?:\/\//.test(text)) {
    const hash = text.lastIndexOf('#');
    if (hash < 0) throw usage(`--${flag}: a postgres provider needs the table after #, e.g. postgres://host/db#items`);
    const table = text.slice(hash + 1);
    const [schema, name] = table.includes('.') ? table.split('.', 2) : [undefined, table];
    return { type: 'postgres', url: text.slice(0, hash), table: name, ...(schema ? { schema } : {}) };
  }
  const colon = text.indexOf(':');
  const type = colon > 0 ? text.slice(0, colon) : '';
  const path = text.slice(colon + 1);
  if (!['dir', 'jsonl', 'json', 'csv', 'sqlite'].includes(type) || !path) {
    throw usage(`--${flag}: expected dir:PATH, jsonl:PATH, json:PATH, csv:PATH, sqlite:PATH#TABLE, postgres://…#TABLE or a JSON object, got ${JSON.stringify(raw)}`);
  }
  if (type === 'sqlite') {
    const hash = path.lastIndexOf('#');
    if (hash < 0) throw usage(`--${flag}: a sqlite provider needs the table after #, e.g. sqlite:data.db#items`);
    return { type, path: path.slice(0, hash), table: path.slice(hash + 1) };
  }
  return { type, path };
}

/** KEY=VALUE pairs; a value that parses as JSON (a number, true, a list) is taken as JSON. */
function pairs(flag: string, list: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw usage(`--${flag}: expected KEY=VALUE, got ${JSON.stringify(item)}`);
    const key = item.slice(0, eq).replace(/:$/, '');
    const raw = item.slice(eq + 1);
    try {
      out[key] = JSON.parse(raw);
    } catch {
      out[key] = raw;
    }
  }
  return out;
}

/** The JobSpec a sync command describes: --spec (a JobSpec with `sync`, or the sync section alone), then the flags. */
export function syncSpecFromFlags(ctx: CommandContext): Record<string, unknown> {
  const v = ctx.values;
  let spec: Record<string, unknown> = {};
  if (v.spec) {
    const path = String(v.spec);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(path === '-' ? 0 : path, 'utf8'));
    } catch (err) {
      throw usage(`--spec: cannot read ${path} as JSON: ${(err as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw usage('--spec: expected a JSON object');
    spec = 'source' in parsed ? { sync: parsed } : { ...(parsed as Record<string, unknown>) };
  }
  const sync: Record<string, unknown> = { ...((spec.sync as Record<string, unknown> | undefined) ?? {}) };
  if (v.source) sync.source = providerArg('source', String(v.source));
  if (v.target) sync.target = providerArg('target', String(v.target));
  if (v.mode) sync.mode = String(v.mode);
  if (v.pair) sync.pair = String(v.pair);
  const options = pairs('option', (v.option as string[] | undefined) ?? []);
  if (Object.keys(options).length) sync.options = { ...((sync.options as Record<string, unknown> | undefined) ?? {}), ...options };
  if (v['transform-worker']) {
    const prompt = v['prompt-file'] ? readText('prompt-file', String(v['prompt-file'])) : v.prompt;
    sync.transform = {
      worker_type: String(v['transform-worker']),
      worker_config: pairs('work', (v.work as string[] | undefined) ?? []),
      ...(prompt ? { prompt: String(prompt) } : {}),
    };
  }
  if (!sync.source || !sync.target) throw usage('a sync needs --source and --target (or a --spec file with both)');
  spec.sync = sync;
  if (v.name) spec.name = String(v.name);
  if (v.intent) spec.user_intent = String(v.intent);
  const retries = intFlag(ctx, 'max-retries', 0);
  if (retries !== undefined) spec.max_retries = retries;
  const workers = intFlag(ctx, 'max-workers', 1);
  if (workers !== undefined) spec.max_workers = workers;
  return spec;
}

function planLine(p: { text?: string; first_run?: boolean }): string {
  return `${p.text ?? ''}${p.first_run ? ' (first run: no removes)' : ''}`;
}

type Reads = { source: { text: string }; target: { text: string } | null };

/** How each side was read: `source: checkpoint (unchanged), target: full snapshot (no checkpoint)`. */
function readsLine(r: Reads): string {
  return `source: ${r.source.text}, target: ${r.target?.text ?? 'not read (down)'}`;
}

type GuardEvent = { guard: string; side?: string; count: number; items?: number; max_delete_ratio?: number; previous?: number; current?: number };

/** Why a guard held writes back, and what lets a deletion you mean through. */
function guardLine(g: GuardEvent): string {
  const letThrough = '-o allow_mass_delete=true lets a deletion you mean through';
  switch (g.guard) {
    case 'mass_delete':
      return `guard mass_delete: ${g.count} of the ${g.items} items in the ${g.side} would be removed, over max_delete_ratio ${g.max_delete_ratio}; none is removed (${letThrough})`;
    case 'suspect_snapshot':
      return `guard suspect_snapshot: the ${g.side} shrank from ${g.previous} to ${g.current} items, which looks like a broken read; its ${g.count} removes are held (${letThrough})`;
    case 'provider_down':
      return `guard provider_down: the ${g.side} is down, so its ${g.count} writes stay unresolved until a run finds it up`;
    case 'quarantine':
      return `guard quarantine: ${g.count} items failed quarantine_after runs in a row and are skipped until their cool-down ends`;
    case 'phantom':
      return `guard phantom: ${g.count} adds were confirmed but never appeared, and are not tried again`;
    case 'tombstone':
      return `guard tombstone: ${g.count} stale copies of deleted items stay deleted`;
    default:
      return `guard ${g.guard}: ${g.count} writes held`;
  }
}

export const sync: Command = {
  usage: `abp sync run|plan [--spec sync.json] [--source PROVIDER] [--target PROVIDER] [--mode one-way|two-way]
                [--pair NAME] [-o OPTION=VALUE ...] [--name NAME] [--intent TEXT]
                [--transform-worker TYPE [-w KEY=VALUE ...] [--prompt TEXT | --prompt-file FILE]]
                [--max-retries N] [--max-workers N] [--start | --skip-test] [--wait SECONDS]
       abp sync status [PAIR]
  PROVIDER: dir:PATH, jsonl:PATH, json:PATH, csv:PATH, sqlite:PATH#TABLE, postgres://…#TABLE, or a JSON object
  OPTION: max_delete_ratio (0.1), allow_mass_delete (false), suspect_min_prev (20), suspect_shrink_ratio (0.1),
          tombstone_ttl_days (30), quarantine_after (3), quarantine_cooldown_hours (24), phantom_max_readds (1),
          conflict_winner (source), apply_chunk_size (100), chunk_pause_ms (0)`,
  options: {
    spec: { type: 'string' },
    source: { type: 'string' },
    target: { type: 'string' },
    mode: { type: 'string' },
    pair: { type: 'string' },
    option: { type: 'string', short: 'o', multiple: true },
    name: { type: 'string' },
    intent: { type: 'string' },
    'transform-worker': { type: 'string' },
    work: { type: 'string', short: 'w', multiple: true },
    prompt: { type: 'string' },
    'prompt-file': { type: 'string' },
    'max-retries': { type: 'string' },
    'max-workers': { type: 'string' },
    start: { type: 'boolean' },
    'skip-test': { type: 'boolean' },
    wait: { type: 'string' },
  },
  async run(ctx) {
    const sub = ctx.positionals[0];
    if (!sub || !(SUBCOMMANDS as readonly string[]).includes(sub)) throw usage(`sync: expected a subcommand, one of ${SUBCOMMANDS.join(', ')}; got ${JSON.stringify(sub ?? '')}`);
    const app = await ctx.app();
    const { orchestrator } = app;
    if (sub === 'status') {
      const pair = ctx.positionals[1];
      if (!pair) {
        const pairs = await orchestrator.sync.pairs();
        ctx.print(pairs.length ? pairs.map((p) => `${p.pair_id}  ${p.mode}  last job ${p.last_job_id ?? '-'}`).join('\n') : 'no sync pairs yet', pairs);
        return;
      }
      const s = await orchestrator.sync.status(pair);
      ctx.print(
        [
          `${s.pair_id} (${s.mode}): baseline ${s.baseline.source} source / ${s.baseline.target} target items, ${s.tombstones} tombstones`,
          ...(s.failing.length ? [`failing: ${s.failing.map((f) => `${f.key} (${f.failures}×: ${f.last_error})`).join(', ')}`] : []),
          ...(s.quarantined.length ? [`quarantined: ${s.quarantined.map((q) => `${q.key} until ${q.until}`).join(', ')}`] : []),
          ...(s.phantoms.length ? [`phantom adds: ${s.phantoms.map((p) => `${p.key} (${p.readds} re-adds)`).join(', ')}`] : []),
        ].join('\n'),
        s,
      );
      return;
    }
    const spec = syncSpecFromFlags(ctx);
    if (sub === 'plan') {
      const p = await orchestrator.preview(spec);
      const s = (p as { sync: { text?: string; first_run?: boolean; guards: GuardEvent[]; reads: Reads; writes: { op: string; side: string; key: string }[]; blocked: { key: string; guard: string }[] } }).sync;
      ctx.print(
        [
          `dry run, nothing written: ${planLine(s)}`,
          readsLine(s.reads),
          ...s.guards.map(guardLine),
          ...s.writes.map((w) => `  ${w.op} ${w.side} ${w.key}`),
          ...s.blocked.map((b) => `  blocked (${b.guard}) ${b.key}`),
        ].join('\n'),
        p,
      );
      return;
    }
    const job = (await orchestrator.createJob(spec)) as { job_id: number; status: string; units?: number; sync?: { text?: string; first_run?: boolean; guards?: GuardEvent[]; reads?: Reads } };
    const lines = [`created sync job ${job.job_id}: ${planLine(job.sync ?? {})}, ${job.units ?? 0} units`, ...(job.sync?.reads ? [readsLine(job.sync.reads)] : []), ...(job.sync?.guards ?? []).map(guardLine)];
    let final: unknown = job;
    const wait = intFlag(ctx, 'wait', 0) ?? 600;
    if (job.status === 'CREATED' && (ctx.values.start || ctx.values['skip-test'])) {
      const started = await (ctx.values['skip-test'] ? orchestrator.skipTest : orchestrator.startTest).call(orchestrator, job.job_id, { waitSeconds: wait, approvedBy: 'person (cli)' });
      // The job type's end (saving the pair's state) runs in the executors' passes; running the same
      // idempotent hook here makes this answer final without waiting for one. A job still going is left alone.
      await orchestrator.jobEnded(job.job_id);
      const summary = await orchestrator.sync.summary(job.job_id);
      lines.push(`job ${job.job_id} is ${started.job.status}${summary ? `: ${(summary as { text: string }).text}` : ''}`, `next: ${cliHint(started.next_step)}`);
      final = { ...job, job: started.job, test_unit: started.test_unit, summary };
    } else if (job.status === 'CREATED') {
      lines.push(`next: abp start ${job.job_id}   (applies the first chunk as a test)`);
    } else {
      const summary = await orchestrator.sync.summary(job.job_id);
      lines.push(`nothing to write; job ${job.job_id} is ${job.status}`);
      final = { ...job, summary };
    }
    ctx.print(lines.join('\n'), final);
    // As `abp start`: a run that ended FAILED is a failure for the shell too.
    const status = (final as { job?: { status?: string }; status?: string }).job?.status ?? (final as { status?: string }).status;
    return status === 'FAILED' ? 1 : 0;
  },
};
