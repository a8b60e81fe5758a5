import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bench, fill, type Group } from './bench.js';
import { tableOrder } from './render.js';
import { ROWS } from './rows.js';

const numbers = new Map(tableOrder(ROWS).map((row, i) => [row, i + 1]));

/**
 * Runs every row of a group against the real product and checks that the user
 * sees exactly the error the catalogue (docs/bad-inputs.md) says, signalled the
 * way it says; each trigger also checks what its row says is kept. The rows of
 * a group share one bench (a sandbox, a server, an MCP client), in order. Tests
 * are named by their row's number in the table.
 */
export function runRows(group: Group): void {
  describe(`bad-input catalogue: ${group} rows`, () => {
    let bench: Bench;
    beforeAll(async () => {
      bench = await Bench.open(group);
    });
    afterAll(async () => {
      await bench?.close();
    });

    for (const row of ROWS.filter((r) => r.group === group)) {
      it(`#${numbers.get(row)} ${row.surface}: ${row.input}`, async () => {
        const seen = await row.trigger(bench);
        const vars = { dir: bench.dir, ...seen.vars };
        expect({ error: seen.error, signal: seen.signal }).toEqual({ error: fill(row.error, vars), signal: fill(row.signal, vars) });
      });
    }
  });
}
