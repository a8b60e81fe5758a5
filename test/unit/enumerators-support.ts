import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnumerateContext, Enumerator, Item, SkippedItem } from '../../src/contracts/enumerator.js';
import { AbpError } from '../../src/domain/errors.js';
import { parseWith } from '../../src/domain/job-spec.js';

/** Parses the config exactly as the orchestrator does, then drains the enumeration. */
export async function collect(
  enumerator: Enumerator<any>,
  config: unknown,
  ctx: Partial<EnumerateContext> = {},
): Promise<{ items: Item[]; skipped: SkippedItem[] }> {
  const parsed = parseWith(enumerator.configSchema, config, 'enumerator_config');
  const skipped: SkippedItem[] = [];
  const items: Item[] = [];
  for await (const item of enumerator.enumerate(parsed, { signal: new AbortController().signal, onSkip: (s) => skipped.push(s), ...ctx })) {
    items.push(item);
  }
  return { items, skipped };
}

/** The AbpError an enumeration (or its config parse) fails with; fails the test if it succeeds. */
export async function failure(enumerator: Enumerator<any>, config: unknown, ctx: Partial<EnumerateContext> = {}): Promise<AbpError> {
  try {
    await collect(enumerator, config, ctx);
  } catch (err) {
    if (err instanceof AbpError) return err;
    throw err;
  }
  throw new Error('expected the enumeration to fail, but it succeeded');
}

/** A fresh temp directory per test. */
export function tempDir(): { dir: string; path: (...p: string[]) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'abp-enum-'));
  return { dir, path: (...p) => join(dir, ...p), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
