import { z } from 'zod';

/**
 * The sync section of a JobSpec: a pair of inventories kept in step. Lives in
 * domain/ because JobSpec embeds it; the providers themselves are in src/sync/.
 */
const chunkOverride = z.int().min(1).max(100_000).optional().describe('Overrides options.apply_chunk_size for writes to this provider.');
const updatedAt = z.string().min(1).optional().describe('A field holding the last-modified time (ISO 8601 or epoch ms); used to settle two-way conflicts.');
const keyField = (what: string) => z.string().min(1).default('id').describe(`The ${what} that keys each item.`);

export const DirProviderConfig = z.strictObject({
  type: z.literal('dir'),
  path: z.string().min(1).describe('The folder; key = path relative to it, hash = sha256 of the content.'),
  extensions: z.array(z.string().min(1)).optional().describe('Only files ending in one of these (e.g. [".md"]); default: every file.'),
  apply_chunk_size: chunkOverride,
});
export const JsonlProviderConfig = z.strictObject({
  type: z.literal('jsonl'),
  path: z.string().min(1).describe('A JSON Lines file, one object per line.'),
  id_field: keyField('field'),
  updated_at_field: updatedAt,
  apply_chunk_size: chunkOverride,
});
export const JsonProviderConfig = z.strictObject({
  type: z.literal('json'),
  path: z.string().min(1).describe('A JSON file holding an array of objects.'),
  id_field: keyField('field'),
  updated_at_field: updatedAt,
  apply_chunk_size: chunkOverride,
});
export const CsvProviderConfig = z.strictObject({
  type: z.literal('csv'),
  path: z.string().min(1).describe('A CSV file with a header row.'),
  id_column: keyField('column'),
  updated_at_column: updatedAt,
  apply_chunk_size: chunkOverride,
});
export const SqliteProviderConfig = z.strictObject({
  type: z.literal('sqlite'),
  path: z.string().min(1).describe('A SQLite database file.'),
  table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected a plain table name').describe('The table; key = its primary key.'),
  key_column: z.string().min(1).optional().describe('Default: the primary key column.'),
  updated_at_column: updatedAt,
  apply_chunk_size: chunkOverride,
});
export const PostgresProviderConfig = z.strictObject({
  type: z.literal('postgres'),
  url: z.string().regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL'),
  table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected a plain table name').describe('The table; key = its primary key.'),
  schema: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).default('public'),
  key_column: z.string().min(1).optional().describe('Default: the primary key column.'),
  updated_at_column: updatedAt,
  apply_chunk_size: chunkOverride,
});

export const ProviderConfig = z.discriminatedUnion('type', [
  DirProviderConfig,
  JsonlProviderConfig,
  JsonProviderConfig,
  CsvProviderConfig,
  SqliteProviderConfig,
  PostgresProviderConfig,
]);
export type ProviderConfig = z.infer<typeof ProviderConfig>;
export const PROVIDER_TYPES = ['dir', 'jsonl', 'json', 'csv', 'sqlite', 'postgres'] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

export const SYNC_MODES = ['one-way', 'two-way'] as const;
export type SyncMode = (typeof SYNC_MODES)[number];

/** Guardrail and apply settings. Defaults follow CrossWatch. */
export const SyncOptions = z.strictObject({
  max_delete_ratio: z
    .number()
    .min(0)
    .max(1)
    .default(0.1)
    .describe('Removes from one side above this share of its items are all blocked (0.1: 10 of 100 pass, 11 are blocked).'),
  allow_mass_delete: z.boolean().default(false).describe('Let removes through the mass-delete block and the suspect-snapshot guard. For a deletion you mean.'),
  suspect_min_prev: z.int().min(0).default(20).describe('A snapshot can be suspect only when the previous one had at least this many items.'),
  suspect_shrink_ratio: z
    .number()
    .min(0)
    .max(1)
    .default(0.1)
    .describe('A snapshot with at most this share of the previous count is suspect: no removes come from it.'),
  tombstone_ttl_days: z.number().positive().default(30).describe('How long a deletion is remembered.'),
  quarantine_after: z.int().min(1).default(3).describe('An item whose write fails this many runs in a row is quarantined.'),
  quarantine_cooldown_hours: z.number().min(0).default(24).describe('How long a quarantined item is skipped before it is tried again.'),
  phantom_max_readds: z.int().min(0).default(1).describe('How often an add that was confirmed but never appeared is tried again before it is blocked.'),
  conflict_winner: z.enum(['source', 'target']).default('source').describe('Two-way: who wins a conflict when updated_at does not decide it.'),
  apply_chunk_size: z.int().min(1).max(100_000).default(100).describe('Writes per work unit; the first unit is the test unit.'),
  chunk_pause_ms: z.int().min(0).max(3_600_000).default(0).describe('A pause before each chunk after the first.'),
});
export type SyncOptions = z.infer<typeof SyncOptions>;

/** The agentic part: every added or changed source item passes through this worker, and its output is written. */
export const SyncTransform = z.strictObject({
  worker_type: z.string().min(1).describe('A registered worker (shell, claude, http-llm, …).'),
  worker_config: z.record(z.string(), z.unknown()).default({}),
  prompt: z
    .string()
    .min(1)
    .optional()
    .describe('Rendered per item: {{intent}}, {{item.key}}, {{item.content}} (dir) or {{item.FIELD}}, {{item_json}}. Default: the intent and the item.'),
});
export type SyncTransform = z.infer<typeof SyncTransform>;

export const SyncPair = z
  .strictObject({
    pair: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'expected 1-100 letters, digits, _ . : -')
      .optional()
      .describe('The pair’s name; baselines are kept per pair. Default: derived from source and target.'),
    source: ProviderConfig,
    target: ProviderConfig,
    mode: z.enum(SYNC_MODES).default('one-way'),
    options: SyncOptions.default(SyncOptions.parse({})),
    transform: SyncTransform.optional(),
  })
  .superRefine((pair, ctx) => {
    if (pair.transform && pair.mode !== 'one-way') {
      ctx.addIssue({ code: 'custom', path: ['transform'], message: 'a transform needs mode one-way (the target is derived from the source)' });
    }
    if ((pair.source.type === 'dir') !== (pair.target.type === 'dir')) {
      ctx.addIssue({ code: 'custom', path: ['target', 'type'], message: `a dir provider pairs only with another dir provider (source ${pair.source.type}, target ${pair.target.type})` });
    }
  })
  .describe('A sync job: keep target in step with source (one-way), or both with each other (two-way).');
export type SyncPair = z.infer<typeof SyncPair>;

export const SYNC_ENUMERATOR_TYPE = 'sync-plan';
export const SYNC_WORKER_TYPE = 'sync-apply';

/**
 * Fills what a sync spec may leave out, so that `{sync: {...}}` alone is a valid
 * JobSpec: a sync job's enumerator is its plan and its worker applies the writes.
 */
export function withSyncDefaults(input: unknown): unknown {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) return input;
  const spec = input as Record<string, unknown>;
  if (spec.sync === undefined || spec.sync === null) return input;
  type Side = { type?: unknown; path?: unknown; table?: unknown } | undefined;
  const sync = spec.sync as { source?: Side; target?: Side; pair?: unknown };
  // Only scalars go into the default name: String() throws on {"toString": 0}, and the schema, not this, must refuse a bad side.
  const text = (v: unknown, fallback: string) => (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : fallback);
  const name = (s: Side) => (s ? `${text(s.type, '?')} ${text(s.path ?? s.table, '')}`.trim() : '?');
  return {
    name: `sync ${typeof sync.pair === 'string' ? sync.pair : `${name(sync.source)} → ${name(sync.target)}`}`.slice(0, 200),
    user_intent: `Keep ${name(sync.target)} in step with ${name(sync.source)}.`,
    enumerator_type: SYNC_ENUMERATOR_TYPE,
    worker_type: SYNC_WORKER_TYPE,
    ...spec,
  };
}
