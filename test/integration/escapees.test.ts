import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sandbox, sleep } from '../helpers/cli.js';

/*
 * A unit ends at its timeout, at a cancel and when its command exits, even when
 * something it started escaped its process group with `setsid` and holds its
 * stdout open; the escapee is found and killed (both stores, the shell and the
 * agent-cli workers, which between them use both of abp's process runners).
 */

/**
 * A shell snippet that starts an escapee: a new session (setsid) that writes its pid
 * to FILE (expanded by the unit's shell), keeps the unit's stdout open and sleeps 300 s.
 */
const escape = (file: string) => `setsid sh -c 'echo $$ > "$0"; exec sleep 300' "${file}" &`;

/** The escapee's pid, once it has written it. */
async function escapeePid(file: string): Promise<number> {
  for (let i = 0; !existsSync(file) || readFileSync(file, 'utf8').trim() === ''; i++) {
    if (i > 600) throw new Error(`no escapee pid in ${file}`);
    await sleep(50);
  }
  return Number(readFileSync(file, 'utf8').trim());
}

/** Whether `pid` is the escapee still running (and not another process that reused its pid). */
function escapeeAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2)[0];
    return state !== 'Z' && readFileSync(`/proc/${pid}/cmdline`, 'latin1').startsWith('sleep\u0000300');
  } catch {
    return false;
  }
}

async function goneWithin(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (escapeeAlive(pid) && Date.now() < deadline) await sleep(50);
  return !escapeeAlive(pid);
}

describe.skipIf(process.platform !== 'linux')('units whose processes escape with setsid', () => {
  let sb: Sandbox;
  beforeEach(() => {
    sb = new Sandbox();
  });
  afterEach(async () => {
    await sb.cleanup();
  });

  async function job(worker: string[], items: string[], extra: string[] = []): Promise<number> {
    const file = sb.path('items.csv');
    writeFileSync(file, ['id', ...items].join('\n') + '\n');
    const created = await sb.ok([
      'create', '--name', 'escapees', '--intent', 'escape', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id',
      ...worker, '--max-retries', '0', '--max-workers', String(items.length), ...extra,
    ]);
    return created.job_id as number;
  }

  it('shell: the unit ends at its timeout, its escaped child is killed, and the healthy unit beside it succeeds', async () => {
    const pidFile = sb.path('escapee.pid');
    const script = `if [ "$1" = stuck ]; then ${escape(pidFile)} sleep 100; else echo fine; fi`;
    const id = await job(['--worker', 'shell', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', script, 'sh', '{{item.id}}'])}`], ['stuck', 'well'], ['--timeout', '2']);
    await sb.ok(['start', String(id), '--skip-test']);
    const escapee = await escapeePid(pidFile);
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    expect(done.counts).toMatchObject({ pending: 0, running: 0, succeeded: 1, failed: 1 });
    const results = Object.fromEntries((await sb.results(id)).map((r) => [r.item_id, r]));
    expect(results.well).toMatchObject({ status: 'SUCCEEDED', output: 'fine' });
    expect(results.stuck.status).toBe('FAILED');
    expect(results.stuck.error).toMatch(/timed out/);
    // It ended at its timeout, not when the escapee's 300 s sleep would have let go of stdout.
    const [unit] = await sb.query<{ duration_ms: number }>("select duration_ms from work_units where job_id = ? and item_id = 'stuck'", id);
    expect(Number(unit!.duration_ms)).toBeLessThan(60_000);
    expect(await goneWithin(escapee, 10_000)).toBe(true);
  });

  it('shell: a command that exits while its escapee holds stdout succeeds with its output; the escapee is killed and the cut is recorded', async () => {
    const pidFile = sb.path('escapee.pid');
    const script = `echo result-$1; ${escape(pidFile)} exit 0`;
    const id = await job(['--worker', 'shell', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', script, 'sh', '{{item.id}}'])}`], ['one']);
    await sb.ok(['start', String(id), '--skip-test']);
    const escapee = await escapeePid(pidFile);
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    expect(done.counts).toMatchObject({ succeeded: 1, failed: 0 });
    expect((await sb.results(id))[0]).toMatchObject({ status: 'SUCCEEDED', output: 'result-one' });
    const [attempt] = await sb.query<{ stderr_tail: string }>('select stderr_tail from work_units where job_id = ?', id);
    expect(attempt!.stderr_tail).toMatch(/stdout stayed open after the command ended.*1 leftover process was killed/);
    expect(await goneWithin(escapee, 10_000)).toBe(true);
  });

  it('shell: stop-unit ends a unit whose escapee holds stdout, and kills the escapee', async () => {
    const pidFile = sb.path('escapee.pid');
    const id = await job(['--worker', 'shell', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', `${escape(pidFile)} sleep 100`])}`], ['held'], ['--timeout', '600']);
    await sb.ok(['start', String(id), '--skip-test']);
    const escapee = await escapeePid(pidFile);
    const [unit] = await sb.query<{ id: number }>('select id from work_units where job_id = ?', id);
    await sb.ok(['stop-unit', String(unit!.id)]);
    const done = await sb.waitFor(id, (s) => s.counts.running === 0 && s.counts.pending === 0, 60_000);
    expect(done.counts).toMatchObject({ succeeded: 0, failed: 1 });
    expect(await goneWithin(escapee, 10_000)).toBe(true);
  });

  it('agent-cli: an agent that answers, leaves an escapee holding stdout and exits succeeds; one that hangs ends at its timeout; both escapees are killed', async () => {
    const pidDir = sb.path();
    const script = [
      `${escape(`${pidDir}/$1.pid`)}`,
      'if [ "$1" = hang ]; then sleep 100; fi',
      `echo '{"type":"result","text":"answer"}'`,
    ].join('\n');
    const id = await job(
      ['--worker', 'agent-cli', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', script, 'sh', '{{item.id}}'])}`, '-w', 'output=jsonl', '-w', 'result_path=text', '-w', 'stdin:=null'],
      ['answer', 'hang'],
      ['--timeout', '3'],
    );
    await sb.ok(['start', String(id), '--skip-test']);
    const escapees = [await escapeePid(`${pidDir}/answer.pid`), await escapeePid(`${pidDir}/hang.pid`)];
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    expect(done.counts).toMatchObject({ succeeded: 1, failed: 1 });
    const results = Object.fromEntries((await sb.results(id)).map((r) => [r.item_id, r]));
    expect(results.answer).toMatchObject({ status: 'SUCCEEDED', output: 'answer' });
    expect(results.hang.status).toBe('FAILED');
    expect(results.hang.error).toMatch(/timed out/);
    for (const pid of escapees) expect(await goneWithin(pid, 10_000)).toBe(true);
  });
});
