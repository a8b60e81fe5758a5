import { describe, expect, it } from 'vitest';
import { csvRow, flatten } from '../../src/wire/exports.js';
import { budgetRoom } from '../../src/domain/job-rules.js';
import type { JobRow } from '../../src/store/schema.js';

const job = (over: Partial<JobRow>): JobRow => ({ id: 1, max_cost_usd: 1, cost_usd: 0, reserved_usd: 0, costed_units: 0, running: 0, ...over }) as JobRow;

describe('budgetRoom', () => {
  it('is unlimited without a budget', () => {
    expect(budgetRoom(job({ max_cost_usd: null }), 8)).toEqual({ take: 8, expected: 0, exhausted: null });
  });

  it('probes one unit at a time until a cost is known', () => {
    expect(budgetRoom(job({}), 8)).toMatchObject({ take: 1, expected: 0 });
    expect(budgetRoom(job({ running: 1 }), 8)).toMatchObject({ take: 0, exhausted: null });
  });

  it('reserves the running mean per unit and claims only what fits', () => {
    // Spent 0.30 over 3 costed units: 0.10 each; 1.00 - 0.30 - 0.20 reserved leaves room for 5.
    expect(budgetRoom(job({ cost_usd: 0.3, costed_units: 3, reserved_usd: 0.2 }), 8)).toEqual({ take: 5, expected: 0.09999999999999999, exhausted: null });
    expect(budgetRoom(job({ cost_usd: 0.3, costed_units: 3, reserved_usd: 0.2 }), 2).take).toBe(2);
  });

  it('says budget_exhausted when not one more unit fits', () => {
    const r = budgetRoom(job({ cost_usd: 0.95, costed_units: 10, reserved_usd: 0 }), 4);
    expect(r.take).toBe(0);
    expect(r.exhausted).toMatch(/^budget_exhausted: spent \$0\.9500 \+ reserved \$0\.0000 of max_cost_usd \$1; raise the budget, then resume$/);
  });
});

describe('export helpers', () => {
  it('flattens nested structured outputs into dotted columns, lists stay whole', () => {
    expect(flatten({ a: 1, b: { c: 'x', d: { e: true } }, f: [1, 2] })).toEqual({ a: 1, 'b.c': 'x', 'b.d.e': true, f: [1, 2] });
    // An output that is not an object is the root field (key ""), exported as structured_output.
    expect(flatten('plain')).toEqual({ '': 'plain' });
  });

  it('quotes CSV cells per RFC 4180', () => {
    expect(csvRow(['a', 'b,c', 'say "hi"', 'two\nlines', null, 3, { k: 1 }])).toBe('a,"b,c","say ""hi""","two\nlines",,3,"{""k"":1}"');
  });
});
