import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, groupAlive, Sandbox, sleep } from '../helpers/cli.js';

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

function csv(name: string, rows: string[][]): string {
  const path = sb.path(name);
  writeFileSync(path, rows.map((r) => r.join(',')).join('\n') + '\n');
  return path;
}

/** A CSV of n rows with columns id,text. */
function rowsCsv(n: number): string {
  return csv('rows.csv', [['id', 'text'], ...Array.from({ length: n }, (_, i) => [`r${i + 1}`, `hello ${i + 1}`])]);
}

async function createShellJob(file: string, args: string[], extra: string[] = []): Promise<number> {
  const job = await sb.ok([
    'create',
    '--name', 'test job',
    '--intent', 'echo each row',
    '--enumerator', 'csv',
    '-e', `file_path=${file}`,
    '-e', 'id_column=id',
    '--worker', 'shell',
    '-w', `command=${args[0]}`,
    '-w', `args:=${JSON.stringify(args.slice(1))}`,
    ...extra,
  ]);
  return job.job_id as number;
}

describe('abp CLI: a job from creation to results', () => {
  it('create → test → approve → COMPLETED, with every unit’s output recorded', async () => {
    const id = await createShellJob(rowsCsv(12), ['printf', '%s|%s', '{{item.id}}', '{{item.text}}'], ['--max-workers', '3']);
    const created = await sb.status(id);
    expect(created).toMatchObject({ job_id: id, status: 'CREATED', total: 12, counts: { pending: 12 } });
    for (const key of ['name', 'status_reason', 'cost_usd', 'created_at', 'started_at', 'finished_at']) expect(created).toHaveProperty(key);

    const tested = await sb.ok(['start', String(id), '--wait']);
    expect(tested.job.status).toBe('TESTING');
    expect(tested.test_unit).toMatchObject({ status: 'SUCCEEDED', output: 'r1|hello 1', attempt: 1 });
    expect(tested.job.counts).toMatchObject({ succeeded: 1, pending: 11 });

    const approved = await sb.ok(['start', String(id), '--approve', '--wait']);
    expect(approved.job.approved_by).toBe('person (cli)');
    expect(approved.job.status).toBe('COMPLETED');
    expect(approved.job.counts).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: 12, failed: 0, cancelled: 0 });

    const results = await sb.results(id);
    expect(results).toHaveLength(12);
    for (const [i, line] of results.entries()) {
      expect(line).toMatchObject({ status: 'SUCCEEDED', output: `r${i + 1}|hello ${i + 1}`, error: null, item_id: `r${i + 1}` });
      expect(line.payload).toMatchObject({ id: `r${i + 1}`, _row_index: i + 1, _id: `r${i + 1}` });
      for (const key of ['unit_id', 'cost_usd']) expect(line).toHaveProperty(key);
    }
    // The approved test unit counts and never ran again.
    expect(results[0].attempt).toBe(1);
    expect(await sb.counts(id)).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: 12, failed: 0, cancelled: 0 });

    const csvOut = await sb.cli(['results', String(id), '--format', 'csv']);
    expect(csvOut.stdout.split('\n')[0]).toBe('unit_id,item_id,status,attempt,output,error,cost_usd,duration_ms,payload');
    expect(csvOut.stdout).toContain('r3|hello 3');
    const jsonOut = JSON.parse((await sb.cli(['results', String(id), '--format', 'json'])).stdout);
    expect(jsonOut).toHaveLength(12);
  });

  it('reject → CREATED → edit the prompt → test again', async () => {
    const id = await createShellJob(rowsCsv(3), ['cat'], []);
    // The shell worker sends the rendered prompt on stdin, so the output shows which prompt ran.
    await sb.ok(['update', String(id), '--name', 'renamed']);
    const specWithStdin = await sb.ok([
      'create', '--name', 'p', '--intent', 'first intent', '--enumerator', 'csv', '-e', `file_path=${sb.path('rows.csv')}`,
      '--worker', 'shell', '-w', 'command=cat', '-w', 'stdin={{prompt}}',
    ]);
    const pid = specWithStdin.job_id as number;
    const first = await sb.ok(['start', String(pid), '--wait']);
    expect(first.test_unit.output).toContain('first intent');

    const rejected = await sb.ok(['start', String(pid), '--reject']);
    expect(rejected.job.status).toBe('CREATED');
    expect(rejected.job.counts).toMatchObject({ pending: 3, succeeded: 0 });

    writeFileSync(sb.path('prompt.md'), 'SECOND PROMPT for {{item.id}}: {{intent}}');
    await sb.ok(['update', String(pid), '--prompt-file', sb.path('prompt.md')]);
    const second = await sb.ok(['start', String(pid), '--wait']);
    expect(second.job.status).toBe('TESTING');
    expect(second.test_unit.output).toBe('SECOND PROMPT for r1: first intent');
    expect(second.test_unit.attempt).toBe(2);

    // Editing is only for CREATED jobs; the error says what the state is.
    const refused = await sb.cli(['update', String(pid), '--intent', 'x']);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`job ${pid} is TESTING`);
    expect(id).toBeGreaterThan(0);
  });

  it('watch draws a progress bar on a terminal and prints plain lines otherwise, until the job ends', async () => {
    // Units wait at a gate the test opens, so watch is seen mid-job however slowly it starts.
    const gate = sb.path('gate');
    mkdirSync(gate);
    // `all` lets every unit through; `one` lets exactly one through (mkdir is atomic).
    const gated = ['sh', '-c', `while :; do [ -e ${gate}/all ] && break; [ -e ${gate}/one ] && mkdir ${gate}/took 2>/dev/null && break; sleep 0.02; done`];
    const { execa } = await import('execa');
    const env = { ...process.env, ...sb.env };
    /** Resolves once the process's output matches `pattern`. */
    const seen = (proc: ReturnType<typeof execa>, pattern: RegExp) =>
      new Promise<void>((resolve, reject) => {
        let out = '';
        const look = (chunk: Buffer) => {
          out += String(chunk);
          if (pattern.test(out)) resolve();
        };
        proc.stdout?.on('data', look);
        proc.once('exit', () => reject(new Error(`exited before printing ${pattern}: ${out}`)));
      });

    const id = await createShellJob(rowsCsv(8), gated, ['--max-workers', '2']);
    await sb.ok(['start', String(id), '--skip-test']);
    const plainRun = execa(process.execPath, [CLI, 'watch', String(id), '--interval-ms', '100'], { env, reject: false });
    await seen(plainRun, /\n/);
    writeFileSync(join(gate, 'all'), '');
    const plain = await plainRun;
    expect(plain.exitCode).toBe(0);
    const lines = String(plain.stdout).trim().split('\n');
    expect(lines.length).toBeGreaterThan(1);
    expect(lines[0]).toMatch(/0\/8 succeeded/);
    expect(lines.at(-1)).toMatch(new RegExp(`^job ${id} "test job": COMPLETED, approved by person \\(cli\\) \\| 8/8 succeeded`));
    expect(plain.stdout).not.toContain('\r');

    // A real pseudo-terminal, through util-linux's script(1). One unit passes the gate;
    // the bar shows it part-way; then the rest pass.
    rmSync(join(gate, 'all'));
    const id2 = await createShellJob(rowsCsv(6), gated, ['--max-workers', '1']);
    await sb.ok(['start', String(id2), '--skip-test']);
    const ttyRun = execa('script', ['-qec', `${process.execPath} ${CLI} watch ${id2} --interval-ms 100`, '/dev/null'], { env, reject: false });
    await seen(ttyRun, /0\/6 ok/);
    writeFileSync(join(gate, 'one'), '');
    await seen(ttyRun, /\[#+-+\] +\d+% 1\/6 ok/);
    writeFileSync(join(gate, 'all'), '');
    const tty = await ttyRun;
    expect(tty.exitCode).toBe(0);
    expect(tty.stdout).toContain('\r');
    expect(tty.stdout).toMatch(/\[#+-+\] +\d+% 1\/6 ok 1 failed 0 running \d/);
    expect(tty.stdout).toMatch(/\[#{30}\] 100% 6\/6/);
    // A dozen CLI processes: on a loaded machine each may take seconds to start.
  }, 180_000);

  it('--skip-test and ABP_SKIP_TEST=1 run every unit without a test unit', async () => {
    const file = rowsCsv(4);
    const a = await createShellJob(file, ['echo', '{{item.id}}']);
    const ranA = await sb.ok(['start', String(a), '--skip-test', '--wait']);
    expect(ranA.job).toMatchObject({ status: 'COMPLETED', test_unit_id: null, counts: { succeeded: 4 } });

    for (const value of ['1', 'true']) {
      const b = await createShellJob(file, ['echo', '{{item.id}}']);
      const ranB = await sb.ok(['start', String(b), '--wait'], { ABP_SKIP_TEST: value });
      expect(ranB.job).toMatchObject({ status: 'COMPLETED', test_unit_id: null, counts: { succeeded: 4 } });
    }
  });

  it('pause stops new claims, and resume finishes the job', async () => {
    // Every unit waits at a gate: the pause lands while two are running, whatever the machine's speed.
    const gate = sb.path('open');
    const id = await createShellJob(rowsCsv(30), ['sh', '-c', `while [ ! -e ${gate} ]; do sleep 0.02; done`], ['--max-workers', '2']);
    await sb.ok(['start', String(id), '--skip-test']);
    await sb.waitFor(id, (s) => s.counts.running === 2);
    const paused = await sb.ok(['pause', String(id)]);
    expect(paused).toMatchObject({ status: 'PAUSED', status_reason: 'user' });
    // Running units finish; nothing new is claimed (the executor looks for work every 50 ms).
    writeFileSync(gate, '');
    const settled = await sb.waitFor(id, (s) => s.counts.running === 0);
    expect(settled.counts).toMatchObject({ succeeded: 2, pending: 28 });
    await sleep(500);
    const later = await sb.status(id);
    expect(later.counts.succeeded).toBe(2);
    expect(later.counts.pending).toBeGreaterThan(0);
    expect(later.status).toBe('PAUSED');

    await sb.ok(['resume', String(id)]);
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED');
    expect(done.counts.succeeded).toBe(30);
  });

  it('cancel kills running subprocesses and leaves no orphan process group', async () => {
    const pids = sb.path('pids');
    writeFileSync(pids, '');
    const id = await createShellJob(rowsCsv(6), ['sh', '-c', `echo $$ >> ${pids}; sleep 300 & sleep 300 & wait`], ['--max-workers', '3']);
    await sb.ok(['start', String(id), '--skip-test']);
    await sb.waitFor(id, (s) => s.counts.running === 3);
    const deadline = Date.now() + 10_000;
    let groups: number[] = [];
    while (groups.length < 3 && Date.now() < deadline) {
      groups = readFileSync(pids, 'utf8').split('\n').filter(Boolean).map(Number);
      await sleep(50);
    }
    expect(groups).toHaveLength(3);
    expect(groups.every(groupAlive)).toBe(true);

    const cancelled = await sb.ok(['cancel', String(id)]);
    expect(cancelled).toMatchObject({ status: 'CANCELLED', status_reason: 'user', counts: { cancelled: 6, running: 0, pending: 0 } });
    const gone = Date.now() + 10_000;
    while (groups.some(groupAlive) && Date.now() < gone) await sleep(50);
    expect(groups.filter(groupAlive)).toEqual([]);

    const again = await sb.cli(['cancel', String(id)]);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain(`job ${id} is CANCELLED; cannot cancel`);
  });

  it('a unit that fails twice and then succeeds is SUCCEEDED with attempt 3', async () => {
    const dir = sb.path();
    const script = `f=${dir}/count-$1; n=$(cat $f 2>/dev/null || echo 0); n=$((n+1)); echo $n > $f; if [ $n -lt 3 ]; then echo "try $n failed" >&2; exit 7; fi; echo "ok after $n"`;
    const id = await createShellJob(rowsCsv(2), ['sh', '-c', script, 'sh', '{{item.id}}'], ['--max-retries', '3']);
    const done = await sb.ok(['start', String(id), '--skip-test', '--wait']);
    expect(done.job.status).toBe('COMPLETED');
    const results = await sb.results(id);
    for (const line of results) expect(line).toMatchObject({ status: 'SUCCEEDED', attempt: 3, output: 'ok after 3', error: null });

    // With too few retries the unit fails, and the error keeps the exit code and stderr.
    const id2 = await createShellJob(rowsCsv(1), ['sh', '-c', 'echo boom >&2; exit 5'], ['--max-retries', '1']);
    const failed = await sb.ok(['start', String(id2), '--skip-test', '--wait']).catch(() => undefined);
    expect(failed).toBeUndefined(); // exit code 1: the job FAILED
    const s = await sb.status(id2);
    expect(s).toMatchObject({ status: 'FAILED', counts: { failed: 1 } });
    expect(s.status_reason).toMatch(/^units_failed/);
    const [line] = await sb.results(id2);
    expect(line).toMatchObject({ status: 'FAILED', attempt: 2 });
    expect(line.error).toContain('exit code 5: boom');
  });

  it('a hung unit is killed at its timeout, with its whole process group', async () => {
    const pids = sb.path('pids');
    writeFileSync(pids, '');
    const id = await createShellJob(rowsCsv(1), ['sh', '-c', `echo $$ >> ${pids}; sleep 300 & wait`], ['--timeout', '1', '--max-retries', '0']);
    const started = Date.now();
    await sb.ok(['start', String(id), '--skip-test']);
    const s = await sb.waitFor(id, (x) => x.status === 'FAILED', 20_000);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(s.counts.failed).toBe(1);
    const [line] = await sb.results(id);
    expect(line.error).toMatch(/timed out/);
    const [pgid] = readFileSync(pids, 'utf8').split('\n').filter(Boolean).map(Number);
    expect(pgid).toBeGreaterThan(1);
    const gone = Date.now() + 5000;
    while (groupAlive(pgid as number) && Date.now() < gone) await sleep(50);
    expect(groupAlive(pgid as number)).toBe(false);
  });

  it('braces, {{placeholders}} and JSON in the intent and in CSV cells reach the worker literally', async () => {
    const tricky = '{{item.secret}} {{intent}} {"a": {"b": [1, 2]}} ``` }}{{';
    const file = csv('tricky.csv', [
      ['id', 'text', 'secret'],
      ['t1', `"${tricky.replace(/"/g, '""')}"`, 'SHOULD-NOT-APPEAR'],
    ]);
    const intent = 'Handle {{item.secret}} and {"json": true} and {{ job.name }} literally';
    const job = await sb.ok([
      'create', '--name', 'literal', '--intent', intent, '--enumerator', 'csv', '-e', `file_path=${file}`,
      '--worker', 'shell', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', 'printf "%s" "$1"; printf "\\n---\\n"; cat', 'sh', '{{item.text}}'])}`,
      '-w', 'stdin={{prompt}}',
    ]);
    const done = await sb.ok(['start', String(job.job_id), '--skip-test', '--wait']);
    expect(done.job.status).toBe('COMPLETED');
    const [line] = await sb.results(job.job_id);
    const [arg, prompt] = line.output.split('\n---\n');
    expect(arg).toBe(tricky);
    expect(prompt).toContain(intent);
    expect(prompt).toContain(JSON.stringify(tricky));
    // The data block's fence is longer than any backtick run inside it.
    expect(prompt).toContain('````json');
    expect(prompt.split('SHOULD-NOT-APPEAR').length - 1).toBe(1); // only inside the JSON data block
  });
});
