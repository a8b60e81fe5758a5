import { z } from 'zod';

/** One enumerated item: plain JSON data. `_id` names it in results and errors. */
export type Item = Record<string, unknown> & { _id?: string | number };

/** An input record the enumerator left out (e.g. a malformed CSV row with on_error: "skip"). */
export interface SkippedItem {
  /** 1-based line in the input, when the input has lines. */
  line?: number;
  /** The item, file or row that was left out. */
  item?: string;
  reason: string;
}

export interface EnumerateContext {
  signal: AbortSignal;
  /** Told about each input record that was left out; the orchestrator records them on the job. */
  onSkip?: (skipped: SkippedItem) => void;
  /**
   * The hash a person approved, for enumerators that run user code (see
   * CodeApprovalRequest.code_sha256). Such an enumerator refuses to run when the
   * hash of its code and limits differs.
   */
  approvedCodeSha256?: string;
  /**
   * Folders of abp's own (its home, its database's folder): user code an
   * enumerator runs must not see them.
   */
  privatePaths?: readonly string[];
}

/** User code that a person must approve, by its exact hash, before it runs. */
export interface CodeApprovalRequest {
  code: string;
  /**
   * The sha256 a person approves: of the code together with the values it is
   * given and the limits it runs under, so that changing any of them needs a new
   * approval. (The name is the field's first meaning, the code's hash, kept for
   * the clients that pass it back.)
   */
  code_sha256: string;
  /** Values the code is given; shown with it, and part of the hash. */
  context?: Record<string, unknown>;
  /** The limits it runs under, shown with it, and part of the hash. */
  limits?: Record<string, number | null>;
}

/**
 * Turns a config into a stream of items. Implementations stream: they never hold
 * the whole input in memory, and they throw AbpError('enumeration_failed' | 'invalid_input')
 * with a message that names the field, the line or the item.
 */
export interface Enumerator<C = unknown> {
  readonly type: string;
  readonly description: string;
  /** Which prompt template in prompts/ suits these items (file or generic). */
  readonly promptTemplate: 'file' | 'generic';
  /** A strict schema: unknown fields are rejected. Exposed as JSON Schema by enumeratorInfo. */
  readonly configSchema: z.ZodType<C>;
  /** Present when a config runs user code: the code and hash a person must approve first. */
  approvalFor?(config: C): CodeApprovalRequest | undefined;
  enumerate(config: C, ctx: EnumerateContext): AsyncIterable<Item>;
}

/** What `abp enumerators` and the MCP `list_enumerators` tool show for one type. */
export interface EnumeratorInfo {
  type: string;
  description: string;
  requires_approval: boolean;
  config_schema: Record<string, unknown>;
}

export function enumeratorInfo(e: Enumerator<any>): EnumeratorInfo {
  // io: 'input' documents what a caller may send: fields with defaults are optional.
  const { $schema: _ignored, ...schema } = z.toJSONSchema(e.configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return { type: e.type, description: e.description, requires_approval: e.approvalFor !== undefined, config_schema: schema };
}
