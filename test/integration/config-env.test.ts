import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Sandbox } from '../helpers/cli.js';

let sb: Sandbox | undefined;
afterEach(async () => {
  await sb?.cleanup();
  sb = undefined;
});

function createArgs(s: Sandbox, extra: string[] = []): string[] {
  const items = s.path('items.csv');
  writeFileSync(items, 'id\na\nb\n');
  return ['create', '--name', 'env', '--intent', 'echo', '--enumerator', 'csv', '-e', `file_path=${items}`, '--worker', 'shell', '-w', 'command=true', ...extra];
}

describe('the original ABP environment variables, through the CLI', () => {
  it('ABP_MAX_RETRIES is the default max_retries of a new job; --max-retries and the spec’s own value win', async () => {
    const s = (sb = new Sandbox());
    const byEnv = await s.ok(createArgs(s), { ABP_MAX_RETRIES: '1' });
    expect(byEnv.max_retries).toBe(1);
    expect((await s.status(byEnv.job_id)).max_retries).toBe(1);
    const row = await s.queryOne<{ max_retries: number }>('select max_retries from jobs where id = ?', byEnv.job_id);
    expect(row?.max_retries).toBe(1);

    const byFlag = await s.ok(createArgs(s, ['--max-retries', '5']), { ABP_MAX_RETRIES: '1' });
    expect(byFlag.max_retries).toBe(5);

    const spec = s.path('spec.json');
    writeFileSync(spec, JSON.stringify({ max_retries: 0 }));
    const bySpec = await s.ok(createArgs(s, ['--spec', spec]), { ABP_MAX_RETRIES: '1' });
    expect(bySpec.max_retries).toBe(0);

    const byDefault = await s.ok(createArgs(s));
    expect(byDefault.max_retries).toBe(3);
  });

  it('an invalid ABP_MAX_RETRIES is refused, naming the variable, and creates nothing', async () => {
    const s = (sb = new Sandbox());
    const r = await s.cli(createArgs(s), { ABP_MAX_RETRIES: 'twice' });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('ABP_MAX_RETRIES: expected an integer from 0 to 100, got "twice"');
    expect(await s.ok(['list'])).toEqual([]);
  });

  it('ABP_STORAGE_PATH places the home (and its default database) when ABP_HOME is not set', async () => {
    const s = (sb = new Sandbox());
    const store = s.path('store');
    const created = await s.ok(createArgs(s), { ABP_HOME: '', ABP_DB: '', ABP_STORAGE_PATH: store });
    expect(created.total).toBe(2);
    expect(existsSync(join(store, 'abp.db'))).toBe(true);
  });
});
