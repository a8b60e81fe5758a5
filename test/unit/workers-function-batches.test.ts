import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FunctionPool } from '../../workers/function-pool.js';
import { PACKAGE_ROOT } from '../../src/package-root.js';

/*
 * The function worker's batching on piscina (workers/function-pool.ts), driven
 * directly: tasks queued in one turn go to one thread as one batch, and an abort
 * cancels a task not started, or stops the thread of one that runs, without
 * losing or repeating any other task of the batch. Runs the built thread entry
 * (dist/workers/function-thread.js), like the worker does.
 */
const PROBE = join(PACKAGE_ROOT, 'test', 'fixtures', 'functions', 'batch-probe.mjs');
const CJS = join(PACKAGE_ROOT, 'test', 'fixtures', 'functions', 'commonjs.cjs');

let dir: string;
let pool: FunctionPool | undefined;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'abp-fn-batches-'));
});
afterEach(async () => {
  await pool?.destroy();
  pool = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const task = (id: string, mode = '') => ({ item: { id, mode }, prompt: '', unit_id: 1, job_id: 1, attempt: 1, work_dir: dir });
const ran = () => (existsSync(join(dir, 'ran.log')) ? readFileSync(join(dir, 'ran.log'), 'utf8').trim().split('\n') : []);

async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * One thread whose batches are no longer one task long: batches of no-op tasks
 * measured them short. Its turn's tasks are shared between two batches (one to
 * run, one waiting in piscina).
 */
async function warmPool(): Promise<FunctionPool> {
  const p = new FunctionPool(PROBE, 1);
  for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 8 }, (_, k) => p.run('default', task(`warm${k}`, 'noop'))));
  return p;
}

type Answer = { id: string; threadId: number };

/** The ids of each batch the pool gives piscina, in order. */
function watchBatches(): string[][] {
  const batches: string[][] = [];
  const proto = FunctionPool.prototype as unknown as { send: (tasks: { payload: { item: { id: string } } }[]) => void };
  const send = proto.send;
  vi.spyOn(proto, 'send').mockImplementation(function (this: unknown, tasks) {
    batches.push(tasks.map((t) => t.payload.item.id));
    send.call(this, tasks);
  });
  return batches;
}
afterEach(() => {
  vi.restoreAllMocks();
});

describe('function worker batches on piscina', () => {
  it('aborting a spinning task mid-batch stops its thread; the others finish exactly once', async () => {
    pool = await warmPool();
    const p = pool;
    const batches = watchBatches();
    const before = ['a0', 'a1'].map((id) => p.run('default', task(id)) as Promise<Answer>);
    const spin = new AbortController();
    const spinning = p.run('default', task('spin', 'spin'), spin.signal);
    const after = ['b0', 'b1', 'b2', 'b3', 'b4'].map((id) => p.run('default', task(id)) as Promise<Answer>);
    await until(() => existsSync(join(dir, 'spin.started')));
    // The spinning task is in the middle of its batch: tasks ran before it, and some wait after it.
    const mine = batches.find((b) => b.includes('spin')) ?? [];
    expect(mine.indexOf('spin')).toBeGreaterThan(0);
    expect(mine.indexOf('spin')).toBeLessThan(mine.length - 1);
    spin.abort('cancel');
    await expect(spinning).rejects.toMatchObject({ name: 'AbortError' });
    const a = await Promise.all(before);
    const b = await Promise.all(after);
    expect(a.map((x) => x.id)).toEqual(['a0', 'a1']);
    expect(b.map((x) => x.id)).toEqual(['b0', 'b1', 'b2', 'b3', 'b4']);
    // The a's ran on the thread that was then terminated, the b's on another; the b's of the
    // spinning batch went to piscina again, in a batch of their own.
    expect(new Set(a.map((x) => x.threadId)).size).toBe(1);
    expect(b.every((x) => x.threadId !== a[0]?.threadId)).toBe(true);
    const left = mine.slice(mine.indexOf('spin') + 1);
    expect(batches.slice(batches.indexOf(mine) + 1).some((later) => left.every((id) => later.includes(id)))).toBe(true);
    expect(ran().sort()).toEqual(['a0', 'a1', 'b0', 'b1', 'b2', 'b3', 'b4']);
  });

  it('aborting a queued task cancels only it: its thread goes on with the rest of the batch', async () => {
    pool = await warmPool();
    const p = pool;
    const batches = watchBatches();
    const first = p.run('default', task('slow', 'slow')) as Promise<Answer>;
    const queued = new AbortController();
    const cancelled = p.run('default', task('q'), queued.signal);
    const rest = ['c0', 'c1', 'c2', 'c3'].map((id) => p.run('default', task(id)) as Promise<Answer>);
    await until(() => existsSync(join(dir, 'slow.started')));
    expect(batches[0]?.slice(0, 3)).toEqual(['slow', 'q', 'c0']);
    queued.abort('cancel');
    await expect(cancelled).rejects.toMatchObject({ name: 'AbortError' });
    const answers = [await first, ...(await Promise.all(rest))];
    expect(answers.map((x) => x.id)).toEqual(['slow', 'c0', 'c1', 'c2', 'c3']);
    expect(new Set(answers.map((x) => x.threadId)).size).toBe(1);
    expect(ran().sort()).toEqual(['c0', 'c1', 'c2', 'c3', 'slow']);
  });

  it('calls named exports, CommonJS exports, keeps error stacks, and names a missing export', async () => {
    pool = new FunctionPool(PROBE, 2);
    expect(await pool.run('named', task('n'))).toBe('named n');
    const err = (await pool.run('default', task('t', 'throw')).catch((e: unknown) => e)) as Error;
    expect(err.message).toBe('cannot handle t');
    expect(err.stack).toContain('batch-probe.mjs');
    await expect(pool.run('nope', task('x'))).rejects.toThrow(/^No handler function exported from /);
    const cjs = new FunctionPool(CJS, 1);
    try {
      expect(await cjs.run('shout', task('up'))).toBe('UP');
    } finally {
      await cjs.destroy();
    }
  });
});
