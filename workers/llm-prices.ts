import { z } from 'zod';
import type { TokenUsage } from '../src/contracts/worker.js';

/** US dollars per million tokens. */
export const Price = z.strictObject({
  input_per_mtok: z.number().min(0),
  output_per_mtok: z.number().min(0),
  cache_read_per_mtok: z.number().min(0).optional().describe('Default: input_per_mtok.'),
  cache_write_per_mtok: z.number().min(0).optional().describe('Default: input_per_mtok.'),
});
export type Price = z.infer<typeof Price>;

const p = (input: number, output: number, cacheRead?: number, cacheWrite?: number): Price => ({
  input_per_mtok: input,
  output_per_mtok: output,
  ...(cacheRead !== undefined ? { cache_read_per_mtok: cacheRead } : {}),
  ...(cacheWrite !== undefined ? { cache_write_per_mtok: cacheWrite } : {}),
});

/**
 * List prices by model-name prefix, as published when this table was written.
 * They change: a job overrides them with worker_config.prices, and a model not
 * listed here has no cost unless the job gives one.
 */
export const PRICES: Readonly<Record<string, Price>> = Object.freeze({
  'gpt-5-nano': p(0.05, 0.4, 0.005),
  'gpt-5-mini': p(0.25, 2, 0.025),
  'gpt-5': p(1.25, 10, 0.125),
  'gpt-4.1-nano': p(0.1, 0.4, 0.025),
  'gpt-4.1-mini': p(0.4, 1.6, 0.1),
  'gpt-4.1': p(2, 8, 0.5),
  'gpt-4o-mini': p(0.15, 0.6, 0.075),
  'gpt-4o': p(2.5, 10, 1.25),
  'o4-mini': p(1.1, 4.4, 0.275),
  o3: p(2, 8, 0.5),
  'claude-opus-4-5': p(5, 25, 0.5, 6.25),
  'claude-opus-4-1': p(15, 75, 1.5, 18.75),
  'claude-opus-4': p(15, 75, 1.5, 18.75),
  'claude-sonnet-4': p(3, 15, 0.3, 3.75),
  'claude-3-7-sonnet': p(3, 15, 0.3, 3.75),
  'claude-3-5-sonnet': p(3, 15, 0.3, 3.75),
  'claude-haiku-4-5': p(1, 5, 0.1, 1.25),
  'claude-3-5-haiku': p(0.8, 4, 0.08, 1),
});

/** The price of a model: the override, else the longest matching prefix in the table. */
export function priceOf(model: string, override?: Price): Price | undefined {
  if (override) return override;
  const name = model.toLowerCase().replace(/^.*\//, ''); // "openai/gpt-4o" (OpenRouter) → "gpt-4o"
  let best: string | undefined;
  for (const prefix of Object.keys(PRICES)) {
    if (name.startsWith(prefix) && (best === undefined || prefix.length > best.length)) best = prefix;
  }
  return best === undefined ? undefined : PRICES[best];
}

/**
 * The cost of one call. `input_tokens` counts only uncached input; cache reads
 * and writes are priced on their own.
 */
export function costOf(usage: TokenUsage, price: Price | undefined): number | undefined {
  if (!price) return undefined;
  const m = 1_000_000;
  const cost =
    ((usage.input_tokens ?? 0) * price.input_per_mtok +
      (usage.output_tokens ?? 0) * price.output_per_mtok +
      (usage.cache_read_tokens ?? 0) * (price.cache_read_per_mtok ?? price.input_per_mtok) +
      (usage.cache_write_tokens ?? 0) * (price.cache_write_per_mtok ?? price.input_per_mtok)) /
    m;
  return Math.round(cost * 1e9) / 1e9;
}
