import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeDir } from '../../src/sinks/dir.js';
import { writeJsonl } from '../../src/sinks/jsonl.js';
import { ConfinedWriteError, writeConfined } from '../../src/util/confined-write.js';
import type { ResultLine } from '../../src/wire/views.js';

/*
 * The file sinks in this process, against a real folder with links planted in it:
 * here the process id, which the old temporary names were made of, is known, so a
 * link can wait at exactly the name a write would have used.
 */

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'abp-sinks-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const line = (unit_id: number, item_id: string, output: string): ResultLine => ({
  unit_id, item_id, status: 'SUCCEEDED', attempt: 1, payload: {}, output, structured_output: null, error: null, cost_usd: 0, duration_ms: 1,
});
const linesOf = (list: ResultLine[]) => async function* () {
  yield* list;
};

function outside(): string {
  const victim = join(dir, 'outside', 'victim');
  mkdirSync(join(dir, 'outside'));
  writeFileSync(victim, 'original\n');
  return victim;
}

describe('jsonl sink', () => {
  it('a link waiting at the old temporary name (TARGET.PID.tmp) catches nothing', async () => {
    const victim = outside();
    const target = join(dir, 'out', 'results.jsonl');
    mkdirSync(join(dir, 'out'));
    symlinkSync(victim, `${target}.${process.pid}.tmp`);
    const report = await writeJsonl(target, {} as never, linesOf([line(1, 'a', 'one'), line(2, 'b', 'two')])).catch((err: Error) => err);
    expect(readFileSync(victim, 'utf8')).toBe('original\n');
    expect(report).toMatchObject({ written: 2, failed: 0 });
    expect(readFileSync(target, 'utf8').trim().split('\n').map((l) => JSON.parse(l).output)).toEqual(['one', 'two']);
    expect(readdirSync(join(dir, 'out')).sort()).toEqual(['results.jsonl', `results.jsonl.${process.pid}.tmp`]);
  });

  it('results that fail half-way leave the target as it was and no temporary file', async () => {
    const target = join(dir, 'results.jsonl');
    writeFileSync(target, 'before\n');
    const failing = async function* () {
      yield line(1, 'a', 'one');
      // Long enough for the temporary file to exist on disk before the failure.
      await new Promise((r) => setTimeout(r, 100));
      throw new Error('the store went away');
    };
    await expect(writeJsonl(target, {} as never, failing)).rejects.toThrow('the store went away');
    expect(readFileSync(target, 'utf8')).toBe('before\n');
    expect(readdirSync(dir)).toEqual(['results.jsonl']);
  });
});

describe('dir sink', () => {
  it('a link waiting at the old temporary name (NAME.tmp) catches nothing, and the link at NAME is replaced, not followed', async () => {
    const victim = outside();
    const out = join(dir, 'out');
    mkdirSync(out);
    symlinkSync(victim, join(out, 'x.txt.tmp'));
    symlinkSync(victim, join(out, 'y.txt'));
    const report = await writeDir(out, {} as never, linesOf([line(1, 'x', 'ex'), line(2, 'y', 'why')]));
    expect(readFileSync(victim, 'utf8')).toBe('original\n');
    expect(report).toMatchObject({ written: 2, unchanged: 0, failed: 0, failures: [] });
    expect(readFileSync(join(out, 'x.txt'), 'utf8')).toBe('ex');
    expect(readFileSync(join(out, 'y.txt'), 'utf8')).toBe('why');
    expect(readdirSync(out).sort()).toEqual(['x.txt', 'x.txt.tmp', 'y.txt']);
  });

  it('reports at most 100 failures and counts them all; later units are still written', async () => {
    const victim = outside();
    const out = join(dir, 'out');
    mkdirSync(out);
    symlinkSync(join(dir, 'outside'), join(out, 'sub'));
    const list = [...Array.from({ length: 150 }, (_, i) => line(i + 1, `sub/f${i}`, 'no')), line(151, 'last', 'yes')];
    const report = await writeDir(out, {} as never, linesOf(list)).catch((err: Error) => err);
    expect(readdirSync(join(dir, 'outside'))).toEqual(['victim']);
    expect(report).toMatchObject({ written: 1, failed: 150 });
    expect(report.failures).toHaveLength(100);
    expect(report.failures[0]).toEqual({ unit_id: 1, item_id: 'sub/f0', reason: 'sub is a symbolic link; links inside the folder are never followed' });
    expect(readFileSync(join(out, 'last.txt'), 'utf8')).toBe('yes');
    expect(readdirSync(join(dir, 'outside'))).toEqual(['victim']);
    expect(readFileSync(victim, 'utf8')).toBe('original\n');
  });

  it('a folder that is a file is refused as a whole, naming it', async () => {
    writeFileSync(join(dir, 'file'), '');
    await expect(writeDir(join(dir, 'file'), {} as never, linesOf([line(1, 'a', 'x')]))).rejects.toThrow(`sink dir: ${join(dir, 'file')} cannot be used as the folder`);
  });
});

describe('writeConfined', () => {
  it('refuses names that climb, and a file where a folder should be', async () => {
    await expect(writeConfined(dir, '../x', 'no')).rejects.toThrow(ConfinedWriteError);
    await expect(writeConfined(dir, 'a//b', 'no')).rejects.toThrow(ConfinedWriteError);
    writeFileSync(join(dir, 'f'), '');
    await expect(writeConfined(dir, 'f/g', 'no')).rejects.toThrow('f is a file, not a folder');
    expect(readdirSync(dir)).toEqual(['f']);
  });

  it('a link deeper down is refused at its own component', async () => {
    outside();
    mkdirSync(join(dir, 'in', 'deeper'), { recursive: true });
    symlinkSync(join(dir, 'outside'), join(dir, 'in', 'deeper', 'link'));
    await expect(writeConfined(join(dir, 'in'), 'deeper/link/x.txt', 'no')).rejects.toThrow('deeper/link is a symbolic link; links inside the folder are never followed');
    expect(readdirSync(join(dir, 'outside'))).toEqual(['victim']);
    expect(readdirSync(join(dir, 'in', 'deeper'))).toEqual(['link']);
  });

  it('writes, then leaves an identical file alone', async () => {
    expect(await writeConfined(dir, 'a/b/c.txt', 'hello')).toBe('written');
    expect(await writeConfined(dir, 'a/b/c.txt', 'hello')).toBe('unchanged');
    expect(await writeConfined(dir, 'a/b/c.txt', 'hello!')).toBe('written');
    expect(readFileSync(join(dir, 'a/b/c.txt'), 'utf8')).toBe('hello!');
    expect(readdirSync(join(dir, 'a/b'))).toEqual(['c.txt']);
  });
});
