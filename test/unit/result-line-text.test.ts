import { describe, expect, it } from 'vitest';
import type { UnitRow } from '../../src/store/schema.js';
import { resultLine, resultLineText } from '../../src/wire/views.js';

/** A stored unit row as the store reads it: JSON columns are the text abp wrote with JSON.stringify. */
function row(over: Partial<UnitRow>): UnitRow {
  return {
    id: 7, job_id: 1, seq: 7, item_id: 'a.txt', payload: JSON.stringify({ path: 'a.txt' }), prompt: null, status: 'SUCCEEDED', attempt: 1, failures: 0,
    available_at: 0, lease_owner: null, lease_expires_at: null, worker_pid: null, output: 'done', structured_output: null, error: null, error_kind: null,
    exit_code: 0, stderr_tail: null, cost_usd: 0.0125, input_tokens: null, output_tokens: null, usage: null, session_id: null, duration_ms: 42,
    started_at: 1, finished_at: 2, kind: 'item', reserved_usd: 0, batch_id: null, cache_key: null, cached_from: null, ...over,
  } as UnitRow;
}

describe('resultLineText', () => {
  const rows: Array<[string, UnitRow]> = [
    ['a plain succeeded unit', row({})],
    ['a pending unit with nothing yet', row({ status: 'PENDING', attempt: 0, output: null, cost_usd: null, duration_ms: null, exit_code: null })],
    ['a structured output and a nested payload', row({ structured_output: JSON.stringify({ label: 'spam', scores: [0.5, 1e-7], nested: { ok: true } }), payload: JSON.stringify({ row: { id: '12', tags: ['x', null] }, _row_index: 12 }) })],
    ['quotes, newlines, unicode, a lone surrogate, and a line separator in every text field', row({
      item_id: 'he said "hi"\n\t\u2028', output: 'naïve — 日本語 \ud83d\ude00 \ud800', error: '\\ back \u0000 slash', payload: JSON.stringify({ s: '"\u2028\ud800é' }),
    })],
    ['a failed unit with an error and a cost of 0', row({ status: 'FAILED', output: null, error: 'exit 1: boom', cost_usd: 0 })],
    ['a structured output that is not an object', row({ structured_output: JSON.stringify('just text') })],
    ['PostgreSQL bigint columns as text', row({ id: '9007199254740993' as unknown as number, duration_ms: '1500' as unknown as number })],
  ];

  it.each(rows)('is JSON.stringify(resultLine(unit)), byte for byte: %s', (_what, unit) => {
    const text = resultLineText(unit);
    expect(text).toBe(JSON.stringify(resultLine(unit)));
    expect(JSON.parse(text)).toEqual(resultLine(unit));
  });
});
