import { z } from 'zod';
import { AbpError, errorMessage } from './errors.js';
import { SyncPair, withSyncDefaults } from './sync-pair.js';

const config = z.record(z.string(), z.unknown());

/**
 * The one description of a job, shared by the CLI (`abp create --spec`), the MCP
 * `create_job` tool and `POST /jobs`. Field names follow the original ABP tools.
 */
export const JobSpec = z
  .strictObject({
    name: z.string().trim().min(1).max(200).describe('A short name for the job, shown in lists.'),
    user_intent: z
      .string()
      .trim()
      .min(1)
      .max(100_000)
      .describe('What to do to each item, in plain words. It becomes the task section of every prompt.'),
    enumerator_type: z.string().min(1).describe('Where the items come from: one of the registered enumerators (file, csv, sql, json, dynamic).'),
    enumerator_config: config.default({}).describe("The enumerator's own settings, e.g. {base_directory, pattern} for file."),
    worker_type: z
      .string()
      .min(1)
      .default('claude')
      .describe('Who does the work for each unit: one of the registered workers (shell, claude, agent-cli, http-llm, function). Default: claude (Claude Code), which may only read files in its working directory unless worker_config.allowed_tools grants more.'),
    worker_config: config.default({}).describe("The worker's own settings, e.g. {command, args} for shell."),
    max_workers: z.int().min(1).max(1000).default(4).describe('How many units of this job may run at once, across every executor.'),
    max_retries: z.int().min(0).max(100).default(3).describe('How many times a failed unit is tried again before it is FAILED.'),
    timeout_seconds: z.number().positive().max(7 * 24 * 3600).default(600).describe('Wall-clock limit for one attempt of one unit.'),
    output_schema: config.optional().describe('A JSON Schema the output of each unit should follow; the prompt asks for it.'),
    max_cost_usd: z.number().positive().optional().describe('A spending cap for the whole job, in US dollars.'),
    max_cost_per_unit_usd: z
      .number()
      .positive()
      .optional()
      .describe('A spending cap for one unit, in US dollars, for workers that can stop at one (claude: --max-budget-usd); the unit fails when it passes it.'),
    cache: z
      .boolean()
      .default(false)
      .describe(
        'Answer a unit from the response cache when an identical request (rendered prompt, worker type, model, parameters, output schema and worker config, never secrets) succeeded before, in this job or another; identical prompts within the job are sent once. Off unless asked: an agent’s or a command’s run may have side effects a cached answer would skip.',
      ),
    post_processing_prompt: z
      .string()
      .min(1)
      .optional()
      .describe('Runs one synthesis unit after the units finish, over a manifest of every output; its output is the job’s result.'),
    allow_partial: z.boolean().default(false).describe('Run the synthesis step even when some units failed.'),
    auto_resume: z.boolean().default(false).describe('When a worker’s quota is exhausted, resume the job by itself once the quota resets.'),
    prompt_template: z
      .string()
      .min(1)
      .optional()
      .describe('Replaces the synthesized prompt template. Placeholders: {{intent}}, {{job.name}}, {{item.FIELD}}, {{item_data}}.'),
    sync: SyncPair.optional().describe(
      'Makes this a sync job: keep target in step with source. enumerator_type, worker_type, name and user_intent may then be left out.',
    ),
  })
  .describe('A batch job: one instruction applied to every enumerated item.');

export type JobSpec = z.infer<typeof JobSpec>;
export type JobSpecInput = z.input<typeof JobSpec>;

/** "enumerator_config.file_path: expected string, got number" — one line per problem. */
export function formatZodError(error: z.ZodError, prefix = ''): string {
  return error.issues
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
      if (issue.code === 'unrecognized_keys') {
        const where = path ? ` in ${path}` : '';
        return `unknown field${issue.keys.length > 1 ? 's' : ''}${where}: ${issue.keys.join(', ')}`;
      }
      return `${path || '(root)'}: ${issue.message}`;
    })
    .join('; ');
}

export function parseWith<S extends z.ZodType>(schema: S, value: unknown, prefix = ''): z.infer<S> {
  let result: z.ZodSafeParseResult<z.infer<S>>;
  try {
    result = schema.safeParse(value);
  } catch (err) {
    // zod runs a length check on any value with a `length` (an object too) and compares it as
    // a number: {"length": {"toString": 0}} makes that comparison throw. Said as the refusal of
    // the field that holds it, like any other wrong type.
    const path = [prefix, ...(throwingPath(schema, value) ?? [])].filter(Boolean).join('.');
    throw new AbpError('invalid_input', `${path || '(root)'}: cannot be read as this field's type (${errorMessage(err)}); give a plain value of that type`, { cause: err });
  }
  if (!result.success) throw new AbpError('invalid_input', formatZodError(result.error, prefix));
  return result.data;
}

/** The path, through object fields, to the deepest field whose own schema throws on its value; undefined when none does alone. */
function throwingPath(schema: z.ZodType, value: unknown): string[] | undefined {
  let inner: z.ZodType = schema;
  while (inner instanceof z.ZodOptional || inner instanceof z.ZodDefault || inner instanceof z.ZodNullable) inner = inner.unwrap() as z.ZodType;
  if (!(inner instanceof z.ZodObject) || value === null || typeof value !== 'object') return undefined;
  for (const [key, field] of Object.entries(inner.shape as Record<string, z.ZodType>)) {
    if (!Object.hasOwn(value, key)) continue;
    const v = (value as Record<string, unknown>)[key];
    try {
      field.safeParse(v);
    } catch {
      return [key, ...(throwingPath(field, v) ?? [])];
    }
  }
  return undefined;
}

/** Defaults that come from the installation (ABP_MAX_RETRIES), not from the schema. */
export interface SpecDefaults {
  max_retries?: number;
}

/** Parses a spec; a field it leaves out takes `defaults` first, then the schema's own default. */
export function parseJobSpec(value: unknown, defaults: SpecDefaults = {}): JobSpec {
  const spec = withSyncDefaults(value);
  const filled =
    spec !== null && typeof spec === 'object' && !Array.isArray(spec) && (spec as Record<string, unknown>).max_retries === undefined && defaults.max_retries !== undefined
      ? { ...spec, max_retries: defaults.max_retries }
      : spec;
  return parseWith(JobSpec, filled);
}
