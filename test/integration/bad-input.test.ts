import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sandbox } from '../helpers/cli.js';

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const csvJob = (file: string, extra: string[] = []) => [
  'create', '--name', 'bad', '--intent', 'x', '--enumerator', 'csv', '-e', `file_path=${file}`, '--worker', 'shell', '-w', 'command=true', ...extra,
];

async function jobCount(): Promise<number> {
  return (await sb.ok(['list'])).length;
}

describe('bad input gets a clear error and loses nothing', () => {
  it('a malformed CSV row partway leaves no job behind, and the error names its line', async () => {
    const good = Array.from({ length: 2500 }, (_, i) => `${i},"row ${i}"`);
    writeFileSync(sb.path('bad.csv'), ['id,text', ...good, '2500,"unclosed', ''].join('\n'));
    const r = await sb.cli(csvJob(sb.path('bad.csv')));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/csv .*bad\.csv: .*line 2502/);
    expect(await jobCount()).toBe(0);
    expect((await sb.queryOne<{ n: number }>('select count(*) n from work_units'))?.n).toBe(0);
  });

  it('a missing file, a directory and a pattern that matches nothing are named', async () => {
    const missing = await sb.cli(csvJob(sb.path('nope.csv')));
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain(`enumerator_config.file_path: no such file or directory: ${sb.path('nope.csv')}`);

    const dir = await sb.cli(csvJob(sb.home));
    expect(dir.stderr).toContain('is a directory, not a file');

    const none = await sb.cli(['create', '--name', 'f', '--intent', 'x', '--enumerator', 'file', '-e', `base_directory=${sb.home}`, '-e', 'pattern=*.nothing', '--worker', 'shell', '-w', 'command=true']);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toContain('matched no files');
    expect(await jobCount()).toBe(0);
  });

  it('unknown fields and wrong types name the field', async () => {
    writeFileSync(sb.path('ok.csv'), 'a\n1\n');
    const unknown = await sb.cli(csvJob(sb.path('ok.csv'), ['-e', 'delimeter=;']));
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain('unknown field in enumerator_config: delimeter');

    const wrong = await sb.cli(csvJob(sb.path('ok.csv'), ['-w', 'args:="not a list"']));
    expect(wrong.stderr).toMatch(/worker_config\.args: /);

    writeFileSync(sb.path('spec.json'), JSON.stringify({ name: 'x', user_intent: 'y', enumerator_type: 'csv', worker_type: 'shell', max_workrs: 2 }));
    const spec = await sb.cli(['create', '--spec', sb.path('spec.json'), '--json']);
    expect(spec.exitCode).toBe(2);
    expect(spec.json.error).toMatchObject({ code: 'invalid_input', message: 'unknown field: max_workrs' });

    const type = await sb.cli(csvJob(sb.path('ok.csv')).map((a) => (a === 'csv' ? 'xls' : a)));
    expect(type.stderr).toContain('enumerator_type: unknown type "xls"; expected one of');
  });

  it('an unknown flag or a bad value is a usage error (exit 2) that names the flag', async () => {
    const flag = await sb.cli(['create', '--nmae', 'x']);
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toContain("unknown option '--nmae'");

    const value = await sb.cli(['create', '--name', 'x', '--max-workers', 'lots']);
    expect(value.exitCode).toBe(2);
    expect(value.stderr).toContain('--max-workers: expected an integer >= 1, got "lots"');

    const arg = await sb.cli(['status', 'abc']);
    expect(arg.exitCode).toBe(2);
    expect(arg.stderr).toContain('JOB: expected a positive integer, got "abc"');

    const cmd = await sb.cli(['frobnicate']);
    expect(cmd.exitCode).toBe(2);
    expect(cmd.stderr).toContain('unknown command "frobnicate"');

    const missing = await sb.cli(['status', '99', '--json']);
    expect(missing.exitCode).toBe(1);
    expect(missing.json).toEqual({ error: { code: 'not_found', message: 'job 99 does not exist' } });
  });

  it('an item over the size limit is refused by its index and id, and no job is created', async () => {
    const big = 'x'.repeat(1024 * 1024 + 10);
    writeFileSync(sb.path('big.csv'), `id,text\na,small\nb,${big}\n`);
    const r = await sb.cli(csvJob(sb.path('big.csv'), ['-e', 'id_column=id']));
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/item 2 \(_id "b"\) is \d+ bytes; one item may be at most 1048576 bytes/);
    expect(await jobCount()).toBe(0);
  });

  it('illegal moves name the job, its state and the move', async () => {
    writeFileSync(sb.path('ok.csv'), 'a\n1\n');
    const job = await sb.ok(csvJob(sb.path('ok.csv')));
    const approve = await sb.cli(['start', String(job.job_id), '--approve']);
    expect(approve.exitCode).toBe(1);
    expect(approve.stderr).toContain(`job ${job.job_id} is CREATED; cannot approve (allowed from TESTING)`);
    const resume = await sb.cli(['resume', String(job.job_id)]);
    expect(resume.stderr).toContain(`job ${job.job_id} is CREATED; cannot resume (allowed from PAUSED)`);
  });
});
