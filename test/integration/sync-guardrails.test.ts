import { existsSync, rmSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { numberedFiles, SyncBed } from './sync-support.js';

let bed: SyncBed;
beforeEach(async () => {
  bed = await SyncBed.open();
});
afterEach(async () => {
  await bed.close();
});

/** A SQLite table `items(id integer primary key, title text)` with rows 1..n. */
function table(file: string, n: number, check = ''): string {
  const path = bed.path(file);
  const db = new Database(path);
  db.exec(`create table items (id integer primary key, title text not null${check})`);
  const insert = db.prepare('insert into items (id, title) values (?, ?)');
  db.transaction(() => {
    for (let i = 1; i <= n; i++) insert.run(i, `title ${i}`);
  })();
  db.close();
  return path;
}

function rows(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('select count(*) n from items').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

function exec(path: string, sql: string): void {
  const db = new Database(path);
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}

describe('sync guardrails', () => {
  it('an empty source snapshot after a baseline of 30 deletes nothing (suspect snapshot)', async () => {
    bed.files('src', numberedFiles(30));
    const pair = { source: { type: 'dir', path: bed.path('src') }, target: { type: 'dir', path: bed.path('dst') } };
    bed.files('dst', {});
    expect((await bed.run(pair)).summary).toMatchObject({ adds: 30 });
    for (const name of Object.keys(numberedFiles(30))) rmSync(bed.path('src', name));

    const run = await bed.run(pair);
    expect(run.plan.counts).toMatchObject({ removes: 0, blocked: 30 });
    expect(run.plan.guards).toEqual([expect.objectContaining({ guard: 'suspect_snapshot', side: 'source', previous: 30, current: 0, count: 30 })]);
    expect(Object.keys(bed.read('dst'))).toHaveLength(30);
    const guardEvents = await bed.events(run.job.job_id, 'sync_guard');
    expect(guardEvents[0]).toMatchObject({ guard: 'suspect_snapshot' });
    expect(run.summary).toMatchObject({ removes: 0, blocked: 30 });
    // The baseline kept its 30 items: the source coming back is a no-op.
    expect((await bed.app.orchestrator.sync.status(run.job.sync.pair)).baseline).toEqual({ source: 30, target: 30 });
    bed.files('src', numberedFiles(30));
    expect((await bed.run(pair)).job.total).toBe(0);
  });

  it('a trusted but huge delete is blocked at the exact boundary: 10 of 100 pass, 11 are blocked', async () => {
    const run = async (name: string, drop: number) => {
      const src = table(`${name}-src.db`, 100);
      const dst = table(`${name}-dst.db`, 100);
      const pair = { source: { type: 'sqlite', path: src, table: 'items' }, target: { type: 'sqlite', path: dst, table: 'items' } };
      await bed.run(pair);
      exec(src, `delete from items where id <= ${drop}`);
      return { result: await bed.run(pair), dst };
    };
    const ten = await run('ten', 10);
    expect(ten.result.plan.counts).toMatchObject({ removes: 10, blocked: 0 });
    expect(ten.result.summary).toMatchObject({ removes: 10 });
    expect(rows(ten.dst)).toBe(90);

    const eleven = await run('eleven', 11);
    expect(eleven.result.plan.counts).toMatchObject({ removes: 0, blocked: 11 });
    expect(eleven.result.plan.guards).toEqual([expect.objectContaining({ guard: 'mass_delete', side: 'target', count: 11, items: 100, max_delete_ratio: 0.1 })]);
    expect(rows(eleven.dst)).toBe(100);
  });

  it('an item that fails every run is quarantined after N runs and then skipped', async () => {
    const src = bed.path('items.jsonl');
    writeFileSync(src, `${JSON.stringify({ id: 1, title: 'fine' })}\n${JSON.stringify({ id: 2, title: 'this title is far too long for the target' })}\n`);
    const dst = table('dst.db', 0, ', check (length(title) <= 20)');
    const pair = { source: { type: 'jsonl', path: src }, target: { type: 'sqlite', path: dst, table: 'items' }, options: { quarantine_after: 3 } };
    for (let n = 1; n <= 3; n++) {
      const run = await bed.run(pair);
      // The first run applied item 1 beside it: COMPLETED. The later ones could apply nothing: FAILED.
      expect(run.status).toBe(n === 1 ? 'COMPLETED' : 'FAILED');
      expect(run.summary.unresolved).toBe(1);
      const status = await bed.app.orchestrator.sync.status(run.job.sync.pair);
      expect(status.failing).toEqual([expect.objectContaining({ key: '2', failures: n, last_error: expect.stringMatching(/CHECK constraint failed/) })]);
      expect(status.quarantined.map((q: { key: string }) => q.key)).toEqual(n === 3 ? ['2'] : []);
    }
    expect(rows(dst)).toBe(1);
    const skipped = await bed.run(pair);
    expect(skipped.job.total).toBe(0);
    expect(skipped.status).toBe('COMPLETED');
    expect(skipped.plan.blocked).toEqual([{ key: '2', side: 'target', op: 'add', guard: 'quarantine' }]);
    expect(skipped.plan.guards).toEqual([expect.objectContaining({ guard: 'quarantine', keys: ['2'] })]);
  });

  it('a run with unresolved items ends COMPLETED with their count; they are tried again each run, then quarantined', async () => {
    const src = bed.path('items.jsonl');
    const bad = { id: 99, title: 'this title is far too long for the target' };
    // Each run brings one new item that the target takes, beside the one it refuses.
    const write = (n: number) => writeFileSync(src, [...Array.from({ length: n }, (_, i) => ({ id: i + 1, title: `fine ${i + 1}` })), bad].map((r) => `${JSON.stringify(r)}\n`).join(''));
    const dst = table('dst.db', 0, ', check (length(title) <= 20)');
    const pair = { source: { type: 'jsonl', path: src }, target: { type: 'sqlite', path: dst, table: 'items' }, options: { quarantine_after: 3 } };
    for (let n = 1; n <= 3; n++) {
      write(n);
      const run = await bed.run(pair);
      expect(run.plan.writes).toEqual([
        { op: 'add', side: 'target', key: String(n) },
        { op: 'add', side: 'target', key: '99' },
      ]);
      expect(run.status).toBe('COMPLETED');
      expect(run.summary).toMatchObject({ status: 'COMPLETED', adds: 1, unresolved: 1, text: '+1 ~0 −0 unresolved 1 blocked 0' });
      const status = await bed.app.orchestrator.sync.status(run.job.sync.pair);
      expect(status.failing).toEqual([expect.objectContaining({ key: '99', failures: n, last_error: expect.stringMatching(/CHECK constraint failed/) })]);
      expect(status.quarantined.map((q: { key: string }) => q.key)).toEqual(n === 3 ? ['99'] : []);
      expect(run.summary.quarantined).toEqual(n === 3 ? ['99'] : []);
    }
    write(4);
    const fourth = await bed.run(pair);
    expect(fourth.plan.writes).toEqual([{ op: 'add', side: 'target', key: '4' }]);
    expect(fourth.plan.blocked).toEqual([{ key: '99', side: 'target', op: 'add', guard: 'quarantine' }]);
    expect(fourth.status).toBe('COMPLETED');
    expect(rows(dst)).toBe(4);
  });

  it('a run whose updates apply but whose only add chunk is refused entirely ends COMPLETED with it unresolved', async () => {
    const src = bed.path('items.jsonl');
    const write = (rows: { id: number; title: string }[]) => writeFileSync(src, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
    const dst = table('dst.db', 0, ', check (length(title) <= 20)');
    const pair = { source: { type: 'jsonl', path: src }, target: { type: 'sqlite', path: dst, table: 'items' }, options: { quarantine_after: 3 } };
    write([{ id: 1, title: 'one' }, { id: 2, title: 'two' }]);
    expect((await bed.run(pair)).summary).toMatchObject({ adds: 2, unresolved: 0 });

    // Both updates are taken; the one add, alone in its chunk, is refused: that chunk applies nothing.
    const bad = { id: 99, title: 'this title is far too long for the target' };
    write([{ id: 1, title: 'one, edited' }, { id: 2, title: 'two, edited' }, bad]);
    const run = await bed.run(pair);
    expect(run.job.total).toBe(2);
    expect(run.status).toBe('COMPLETED');
    expect(run.summary).toMatchObject({ status: 'COMPLETED', adds: 0, updates: 2, unresolved: 1, text: '+0 ~2 −0 unresolved 1 blocked 0' });
    const job = await bed.app.repo.requireJob(run.job.job_id);
    expect(job).toMatchObject({ succeeded: 1, failed: 1, status_reason: 'unresolved: 1 of 2 units had every item refused' });
    const [refused] = await bed.app.repo.listUnits(run.job.job_id, { status: ['FAILED'] }, { limit: 10, offset: 0 });
    expect(refused).toMatchObject({ error_kind: 'unresolved', error: expect.stringMatching(/1 of 1 add writes to the target unresolved; first: 99: CHECK constraint failed/) });
    const status = await bed.app.orchestrator.sync.status(run.job.sync.pair);
    expect(status.failing).toEqual([expect.objectContaining({ key: '99', failures: 1, last_error: expect.stringMatching(/CHECK constraint failed/) })]);

    // The refused add is planned again next run; alone, it could apply nothing, so that run fails.
    const again = await bed.run(pair);
    expect(again.plan.writes).toEqual([{ op: 'add', side: 'target', key: '99' }]);
    expect(again.status).toBe('FAILED');
    expect(again.summary).toMatchObject({ unresolved: 1 });
    expect((await bed.app.orchestrator.sync.status(again.job.sync.pair)).failing).toEqual([expect.objectContaining({ key: '99', failures: 2 })]);
    expect(rows(dst)).toBe(2);
  });

  it('a success resets the failure count', async () => {
    const src = bed.path('items.jsonl');
    const write = (title: string) => writeFileSync(src, `${JSON.stringify({ id: 'x', title })}\n`);
    const dst = table('dst.db', 0, ', check (length(title) <= 20)');
    exec(dst, 'drop table items; create table items (id text primary key, title text not null check (length(title) <= 20))');
    const pair = { source: { type: 'jsonl', path: src }, target: { type: 'sqlite', path: dst, table: 'items' }, options: { quarantine_after: 3 } };
    write('a title much too long for the target');
    await bed.run(pair);
    const second = await bed.run(pair);
    expect((await bed.app.orchestrator.sync.status(second.job.sync.pair)).failing).toEqual([expect.objectContaining({ key: 'x', failures: 2 })]);
    write('short');
    const fixed = await bed.run(pair);
    expect(fixed.status).toBe('COMPLETED');
    expect((await bed.app.orchestrator.sync.status(fixed.job.sync.pair)).failing).toEqual([]);
    write('broken again: a title much too long');
    const again = await bed.run(pair);
    const status = await bed.app.orchestrator.sync.status(again.job.sync.pair);
    expect(status.failing).toEqual([expect.objectContaining({ key: 'x', failures: 1 })]);
    expect(status.quarantined).toEqual([]);
  });

  it('an add that is confirmed but never appears is re-added once, then blocked (phantom guard)', async () => {
    bed.files('src', { 'doc.md': '# doc\n', 'notes.txt': 'notes\n' });
    bed.files('dst', {});
    // The target only shows .md files: notes.txt is written, confirmed, and never seen again.
    const pair = { source: { type: 'dir', path: bed.path('src') }, target: { type: 'dir', path: bed.path('dst'), extensions: ['.md'] } };
    const first = await bed.run(pair);
    expect(first.summary).toMatchObject({ adds: 2 });
    const second = await bed.run(pair);
    expect(second.plan.writes).toEqual([{ op: 'add', side: 'target', key: 'notes.txt' }]);
    const third = await bed.run(pair);
    expect(third.job.total).toBe(0);
    expect(third.plan.blocked).toEqual([{ key: 'notes.txt', side: 'target', op: 'add', guard: 'phantom' }]);
    expect((await bed.app.orchestrator.sync.status(third.job.sync.pair)).phantoms).toEqual([{ key: 'notes.txt', readds: 1 }]);
    expect(existsSync(bed.path('dst', 'notes.txt'))).toBe(true);
  });
});
