import type { z } from 'zod';

/** One enumerated item: plain JSON data. `_id` names it in results and errors. */
export type Item = Record<string, unknown> & { _id?: string | number };

export interface EnumerateContext {
  signal: AbortSignal;
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
  readonly configSchema: z.ZodType<C>;
  enumerate(config: C, ctx: EnumerateContext): AsyncIterable<Item>;
}
