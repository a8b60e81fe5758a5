import { readFileSync } from 'node:fs';
import type { Command, CommandContext } from '../command.js';
import { intFlag, numberFlag, onOff, usage } from '../command.js';
import { handlePendingApproval } from './approve.js';

function readJsonFile(flag: string, path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw usage(`--${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw usage(`--${flag}: ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

function jsonObject(flag: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw usage(`--${flag}: not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw usage(`--${flag}: expected a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * KEY=VALUE sets a string; KEY:=JSON sets a number, boolean, list or object
 * (the httpie convention), so `command=true` stays the string "true".
 */
function keyValues(flag: string, pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw usage(`--${flag}: expected KEY=VALUE or KEY:=JSON, got ${JSON.stringify(pair)}`);
    const isJson = pair[eq - 1] === ':';
    const key = pair.slice(0, isJson ? eq - 1 : eq);
    const raw = pair.slice(eq + 1);
    if (!isJson) {
      out[key] = raw;
      continue;
    }
    try {
      out[key] = JSON.parse(raw);
    } catch (err) {
      throw usage(`--${flag}: ${key}:= expects JSON, got ${JSON.stringify(raw)} (${(err as Error).message}); use ${key}=VALUE for text`);
    }
  }
  return out;
}

/** Builds a JobSpec from --spec and the flags; flags win over the file. */
export function specFromFlags(ctx: CommandContext): Record<string, unknown> {
  const v = ctx.values;
  const file = v.spec ? readJsonFile('spec', String(v.spec)) : {};
  // Checked before the spread: spreading an array or a string would turn it into an object of indexes.
  if (file === null || typeof file !== 'object' || Array.isArray(file)) throw usage(`--spec: expected a JSON object, got ${Array.isArray(file) ? 'an array' : file === null ? 'null' : `a ${typeof file}`}`);
  const spec: Record<string, unknown> = { ...(file as Record<string, unknown>) };
  const set = (field: string, value: unknown) => {
    if (value !== undefined) spec[field] = value;
  };
  set('name', v.name);
  set('user_intent', v.intent);
  set('enumerator_type', v.enumerator);
  set('worker_type', v.worker);
  set('max_workers', intFlag(ctx, 'max-workers', 1));
  set('max_retries', intFlag(ctx, 'max-retries', 0));
  set('timeout_seconds', numberFlag(ctx, 'timeout'));
  set('max_cost_usd', numberFlag(ctx, 'max-cost'));
  set('max_cost_per_unit_usd', numberFlag(ctx, 'max-cost-per-unit'));
  if (v.cache !== undefined) set('cache', onOff(ctx, 'cache'));
  set('post_processing_prompt', v['post-processing-prompt']);
  if (v['allow-partial']) set('allow_partial', true);
  if (v['auto-resume']) set('auto_resume', true);
  if (v['prompt-file']) set('prompt_template', readText('prompt-file', String(v['prompt-file'])));
  if (v['output-schema']) set('output_schema', readJsonFile('output-schema', String(v['output-schema'])));
  for (const [field, jsonFlag, kvFlag] of [
    ['enumerator_config', 'enumerator-config', 'enum'],
    ['worker_config', 'worker-config', 'work'],
  ] as const) {
    const base = (spec[field] as Record<string, unknown> | undefined) ?? {};
    const fromJson = v[jsonFlag] ? jsonObject(jsonFlag, String(v[jsonFlag])) : {};
    const fromPairs = keyValues(kvFlag, (v[kvFlag] as string[] | undefined) ?? []);
    if (v.spec || v[jsonFlag] || Object.keys(fromPairs).length > 0) spec[field] = { ...base, ...fromJson, ...fromPairs };
  }
  return spec;
}

export function readText(flag: string, path: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw usage(`--${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
}

export const create: Command = {
  steadyYoungGeneration: true,
  usage: `abp create [--spec job.json] [--name NAME] [--intent TEXT]
           [--enumerator TYPE] [-e KEY=VALUE | -e KEY:=JSON ...] [--enumerator-config JSON]
           [--worker TYPE] [-w KEY=VALUE | -w KEY:=JSON ...] [--worker-config JSON]
           [--max-workers N] [--max-retries N] [--timeout SECONDS] [--max-cost USD] [--max-cost-per-unit USD]
           [--cache on|off] [--prompt-file FILE] [--output-schema FILE] [--post-processing-prompt TEXT] [--allow-partial] [--auto-resume] [-q]`,
  options: {
    spec: { type: 'string' },
    name: { type: 'string' },
    intent: { type: 'string' },
    enumerator: { type: 'string' },
    'enumerator-config': { type: 'string' },
    enum: { type: 'string', short: 'e', multiple: true },
    worker: { type: 'string' },
    'worker-config': { type: 'string' },
    work: { type: 'string', short: 'w', multiple: true },
    'max-workers': { type: 'string' },
    'max-retries': { type: 'string' },
    timeout: { type: 'string' },
    'max-cost': { type: 'string' },
    'max-cost-per-unit': { type: 'string' },
    cache: { type: 'string' },
    'prompt-file': { type: 'string' },
    'output-schema': { type: 'string' },
    'post-processing-prompt': { type: 'string' },
    'allow-partial': { type: 'boolean' },
    'auto-resume': { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
  },
  async run(ctx) {
    const spec = specFromFlags(ctx);
    const app = await ctx.app();
    const job = await app.orchestrator.createJob(spec);
    if ('approval' in job) return handlePendingApproval(ctx, job);
    if (ctx.values.quiet && !ctx.json) {
      process.stdout.write(`${job.job_id}\n`);
      return;
    }
    ctx.print(`created job ${job.job_id} ${JSON.stringify(job.name)} with ${job.total} units\nnext: abp start ${job.job_id}   (runs one test unit for you to check)`, job);
  },
};
