import { writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import type { UnitState } from '../../src/domain/states.js';
import { Sandbox } from '../helpers/cli.js';
import { call, callError, connectInMemory } from '../helpers/mcp.js';
import { queryPostgres } from '../helpers/postgres.js';

// Keyset paging of a job's units (`after` a unit id), on this run's store: pages
// are disjoint and, for units that stay in the filter, complete, while units
// change state between pages; a bad cursor is refused by the field's name.

let sb: Sandbox;
let app: App;

const UNITS = 60;

beforeEach(async () => {
  sb = new Sandbox();
  app = await createApp(resolveConfig(sb.env));
});
afterEach(async () => {
  await app.close();
  await sb.cleanup();
});

async function job(): Promise<{ id: number; ids: number[] }> {
  const path = sb.path('rows.csv');
  writeFileSync(path, ['id,text', ...Array.from({ length: UNITS }, (_, i) => `r${i},t${i}`)].join('\n') + '\n');
  const created = await app.orchestrator.createJob({
    name: 'paging',
    user_intent: 'paging',
    enumerator_type: 'csv',
    enumerator_config: { file_path: path, id_column: 'id' },
    worker_type: 'shell',
    worker_config: { command: 'true' },
  });
  const ids = (await sb.query<{ id: number }>('select id from work_units where job_id = ? order by id', created.job_id)).map((r) => Number(r.id));
  expect(ids).toHaveLength(UNITS);
  return { id: created.job_id, ids };
}

/** Moves units straight in the table, as another process would between two page reads. */
async function move(ids: number[], status: UnitState): Promise<void> {
  if (ids.length === 0) return;
  const text = `update work_units set status = ? where id in (${ids.map(() => '?').join(',')})`;
  if (sb.backend === 'postgres') {
    await queryPostgres(sb.env.ABP_DB as string, text, [status, ...ids]);
    return;
  }
  const db = new Database(sb.env.ABP_DB as string, { timeout: 10_000 });
  try {
    db.prepare(text).run(status, ...ids);
  } finally {
    db.close();
  }
}

/** Every page of `status` by the cursor, calling `between` after each page. */
async function pages(id: number, status: UnitState[] | undefined, limit: number, between: (page: number, lastId: number) => Promise<void>): Promise<number[][]> {
  const out: number[][] = [];
  let after = 0;
  for (;;) {
    const units = await app.orchestrator.listUnits(id, { status }, { limit, after });
    out.push(units.map((u) => u.unit_id));
    if (units.length < limit) return out;
    after = (units.at(-1) as { unit_id: number }).unit_id;
    await between(out.length, after);
  }
}

describe('keyset paging of units', () => {
  it('pages every unit once, in id order, while units move between states behind and ahead of the cursor', async () => {
    const { id, ids } = await job();
    const got = await pages(id, undefined, 7, async (page, last) => {
      // One unit already listed and two not yet reached change state: none may be listed twice or lost.
      await move(ids.filter((u) => u <= last).slice(-1), page % 2 ? 'FAILED' : 'SUCCEEDED');
      await move(ids.filter((u) => u > last).slice(0, 2), page % 2 ? 'SUCCEEDED' : 'FAILED');
    });
    const flat = got.flat();
    expect(flat).toEqual(ids);
    for (const p of got.slice(0, -1)) expect(p).toHaveLength(7);
  });

  it('a state filter: pages are disjoint and rise, and hold every unit that stayed in the filter', async () => {
    const { id, ids } = await job();
    // Mixed states to start with: every third unit FAILED, every fifth SUCCEEDED.
    await move(ids.filter((_, i) => i % 3 === 0), 'FAILED');
    await move(ids.filter((_, i) => i % 5 === 0 && i % 3 !== 0), 'SUCCEEDED');
    const moved = new Set<number>();
    const got = await pages(id, ['PENDING', 'FAILED'], 5, async (_page, last) => {
      // A unit ahead leaves the filter, another ahead moves between the two states of it, one behind leaves.
      const ahead = ids.filter((u) => u > last && !moved.has(u));
      const behind = ids.filter((u) => u <= last && !moved.has(u));
      for (const u of [ahead[0], ahead[1], behind.at(-1)]) if (u !== undefined) moved.add(u);
      if (ahead[0] !== undefined) await move([ahead[0]], 'SUCCEEDED');
      if (ahead[1] !== undefined) await move([ahead[1]], 'FAILED');
      if (behind.at(-1) !== undefined) await move([behind.at(-1) as number], 'CANCELLED');
    });
    const flat = got.flat();
    expect(new Set(flat).size).toBe(flat.length);
    expect(flat).toEqual([...flat].sort((a, b) => a - b));
    const stayed = ids.filter((u, i) => !moved.has(u) && !(i % 5 === 0 && i % 3 !== 0));
    for (const u of stayed) expect(flat).toContain(u);
    // A page by the cursor is the same page as by offset when nothing moves.
    const byOffset = await app.orchestrator.listUnits(id, { status: ['PENDING', 'FAILED'] }, { limit: 5, offset: 5 });
    const first = await app.orchestrator.listUnits(id, { status: ['PENDING', 'FAILED'] }, { limit: 5, after: 0 });
    const second = await app.orchestrator.listUnits(id, { status: ['PENDING', 'FAILED'] }, { limit: 5, after: (first.at(-1) as { unit_id: number }).unit_id });
    expect(second.map((u) => u.unit_id)).toEqual(byOffset.map((u) => u.unit_id));
  });

  it('iterateUnits (exports) yields each unit once, in id order, while units change state under it', async () => {
    const { id, ids } = await job();
    await move(ids.filter((_, i) => i % 4 === 0), 'FAILED');
    const seen: number[] = [];
    let k = 0;
    for await (const unit of app.repo.iterateUnits(id, {}, 4)) {
      seen.push(Number(unit.id));
      if (++k % 6 === 0) {
        const last = Number(unit.id);
        await move(ids.filter((u) => u > last).slice(0, 3), k % 12 ? 'SUCCEEDED' : 'PENDING');
        await move(ids.filter((u) => u < last).slice(-2), 'CANCELLED');
      }
    }
    expect(seen).toEqual(ids);
    const results: number[] = [];
    for await (const line of app.orchestrator.results(id, { status: ['CANCELLED'] })) results.push(line.unit_id);
    const cancelled = (await sb.query<{ id: number }>(`select id from work_units where job_id = ? and status = 'CANCELLED' order by id`, id)).map((r) => Number(r.id));
    expect(results).toEqual(cancelled);
  });

  it('a bad cursor is refused, naming the field: orchestrator `after`, MCP `cursor`', async () => {
    const { id } = await job();
    await expect(app.orchestrator.listUnits(id, {}, { limit: 5, after: -1 })).rejects.toThrow(/^after: expected a unit id/);
    await expect(app.orchestrator.listUnits(id, {}, { limit: 5, after: 1.5 })).rejects.toThrow(/^after:/);
    await expect(app.orchestrator.listUnits(id, {}, { limit: 5, after: 3, offset: 2 })).rejects.toThrow(/^after: give either after/);
    const client: Client = await connectInMemory(app, {});
    try {
      expect(await callError(client, 'list_units', { job_id: id, cursor: 'not-a-cursor' })).toMatch(/cursor: .*is not a cursor this server gave out/);
      expect(await callError(client, 'list_units', { job_id: id, cursor: Buffer.from('{"a":-4}').toString('base64url') })).toMatch(/cursor:/);
      // The tool's cursor pages by unit id; an offset and an old offset cursor still work.
      const first = await call(client, 'list_units', { job_id: id, limit: 25 });
      const second = await call(client, 'list_units', { job_id: id, limit: 25, cursor: first.cursor });
      const third = await call(client, 'list_units', { job_id: id, limit: 25, cursor: second.cursor });
      expect(third.cursor).toBeNull();
      const all = [...first.units, ...second.units, ...third.units].map((u: { unit_id: number }) => u.unit_id);
      expect(all).toHaveLength(UNITS);
      expect(new Set(all).size).toBe(UNITS);
      expect((await call(client, 'list_units', { job_id: id, limit: 25, offset: 25 })).units[0].unit_id).toBe(second.units[0].unit_id);
      const oldCursor = Buffer.from('{"o":25}').toString('base64url');
      expect((await call(client, 'list_units', { job_id: id, limit: 25, cursor: oldCursor })).units[0].unit_id).toBe(second.units[0].unit_id);
      const results = await call(client, 'get_results', { job_id: id, limit: 40 });
      const rest = await call(client, 'get_results', { job_id: id, limit: 40, cursor: results.cursor });
      expect([...results.results, ...rest.results]).toHaveLength(UNITS);
      expect(rest.cursor).toBeNull();
    } finally {
      await client.close();
    }
  });
});
