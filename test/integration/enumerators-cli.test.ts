import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, pgExec } from '../helpers/postgres.js';
import { Sandbox } from '../helpers/cli.js';

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const spec = (type: string, config: Record<string, unknown>) => {
  const path = sb.path(`spec-${type}.json`);
  writeFileSync(path, JSON.stringify({ name: `${type} job`, user_intent: 'summarise {{item.x}} literally', enumerator_type: type, enumerator_config: config, worker_type: 'shell', worker_config: { command: 'true' } }));
  return path;
};

async function jobCount(): Promise<number> {
  return (await sb.queryOne<{ n: number }>('select count(*) n from jobs'))!.n;
}

describe('abp enumerators, preview and approve', () => {
  it('abp enumerators lists all five types with strict JSON Schemas', async () => {
    const list = await sb.ok(['enumerators']);
    expect(list.map((e: { type: string }) => e.type)).toEqual(['file', 'csv', 'sql', 'json', 'dynamic']);
    for (const e of list) {
      expect(e.config_schema).toMatchObject({ type: 'object', additionalProperties: false });
      expect(e.description.length).toBeGreaterThan(20);
    }
    const sql = list.find((e: { type: string }) => e.type === 'sql');
    expect(sql.config_schema.required).toEqual(['connection_string', 'query']);
    expect(list.find((e: { type: string }) => e.type === 'dynamic').requires_approval).toBe(true);
    const human = await sb.cli(['enumerators', 'json']);
    expect(human.stdout).toContain('items_path: string — Where the array of items is in a JSON file');
  });

  it('abp preview shows the count, the first items and the first prompt, and creates nothing', async () => {
    writeFileSync(sb.path('rows.csv'), `id,x\n${Array.from({ length: 50 }, (_, i) => `r${i},{{item.id}}`).join('\n')}`);
    const p = await sb.ok(['preview', '--spec', spec('csv', { file_path: sb.path('rows.csv'), id_column: 'id' }), '--sample', '2']);
    expect(p.count).toBe(50);
    expect(p.items).toEqual([
      { id: 'r0', x: '{{item.id}}', _row_index: 1, _id: 'r0' },
      { id: 'r1', x: '{{item.id}}', _row_index: 2, _id: 'r1' },
    ]);
    expect(p.first_prompt).toContain('summarise {{item.x}} literally');
    expect(p.first_prompt).toContain('"x": "{{item.id}}"');
    expect(await jobCount()).toBe(0);
    // Flags work as for create, and errors are the same as create's.
    const bad = await sb.cli(['preview', '--name', 'n', '--intent', 'i', '--enumerator', 'json', '-e', `file_path=${sb.path('missing.json')}`, '--worker', 'shell', '-w', 'command=true']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toBe(`abp: enumerator_config.file_path: no such file or directory: ${sb.path('missing.json')}`);
  });

  it('csv on_error "skip": the job is created and the skipped rows are recorded as a job event', async () => {
    writeFileSync(sb.path('rows.csv'), 'id,x\n1,a\n2\n3,c\n4,d,e');
    const job = await sb.ok(['create', '--spec', spec('csv', { file_path: sb.path('rows.csv'), on_error: 'skip' })]);
    expect(job.total).toBe(2);
    expect(job.skipped.count).toBe(2);
    const events = await sb.query<{ data: string }>("select data from events where job_id = ? and type = 'enumeration_skipped'", job.job_id);
    expect(events).toHaveLength(1);
    const data = JSON.parse(events[0]!.data);
    expect(data.count).toBe(2);
    expect(data.first.map((s: { line: number }) => s.line)).toEqual([3, 5]);
  });

  it('a JSONL job and a PostgreSQL job, end to end through the CLI', async () => {
    writeFileSync(sb.path('items.jsonl'), '{"id":"a"}\n{"id":"b"}\n{"id":"c"}');
    const json = await sb.ok(['create', '--spec', spec('json', { file_path: sb.path('items.jsonl'), id_field: 'id' })]);
    expect(json.total).toBe(3);
    const url = await createTestDatabase();
    await pgExec(url, "create table t (id text primary key, updated_at timestamptz default now()); insert into t (id) values ('p'), ('q')");
    const sql = await sb.ok(['create', '--spec', spec('sql', { connection_string: url, query: 'SELECT id, updated_at FROM t ORDER BY id', id_column: 'id' })]);
    expect(sql.total).toBe(2);
    const units = await sb.ok(['units', String(sql.job_id)]);
    expect(units.map((u: { item_id: string }) => u.item_id)).toEqual(['p', 'q']);
    const refused = await sb.cli(['create', '--spec', spec('sql', { connection_string: url, query: 'DELETE FROM t' })]);
    expect(refused.stderr).toBe('abp: enumerator_config.query: PostgreSQL refused the statement: cannot execute DELETE in a read-only transaction; only a single SELECT is allowed');
  });

  it('dynamic code: pending approval with its hash, runs only after approving that exact hash, and changed code needs a new approval', async () => {
    const code = 'export default async function* () { for (const id of ["x", "y", "z"]) yield { id, _id: id }; }';
    const created = await sb.ok(['create', '--spec', spec('dynamic', { code })]);
    expect(created).toMatchObject({ status: 'CREATED', status_reason: 'pending_approval', total: 0 });
    expect(created.approval.code).toBe(code);
    expect(created.approval.code_sha256).toMatch(/^[0-9a-f]{64}$/);
    const sha = created.approval.code_sha256 as string;
    const id = String(created.job_id);

    const human = await sb.cli(['create', '--spec', spec('dynamic', { code })]);
    expect(human.stdout).toContain(`code sha256: ${sha}`);
    expect(human.stdout).toContain(`abp approve ${Number(id) + 1} --code-sha256 ${sha}`);

    const start = await sb.cli(['start', id]);
    expect(start.exitCode).toBe(1);
    expect(start.stderr).toBe(`abp: job ${id} has no units yet: its code waits for a person's approval. abp approve ${id} shows the code and its hash to approve`);

    const shown = await sb.ok(['approve', id]);
    expect(shown.approval).toMatchObject({ code, code_sha256: sha });

    const wrong = await sb.cli(['approve', id, '--code-sha256', 'a'.repeat(64)]);
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr).toBe(
      `abp: code_sha256: ${'a'.repeat(64)} does not match job ${id}'s code (sha256 ${sha}, of the code with its context and limits); the code is not the one that was approved. Review the code again and approve its own hash. abp approve ${id} shows the code and its hash to approve`,
    );
    expect((await sb.status(Number(id))).total).toBe(0);

    const approved = await sb.ok(['approve', id, '--code-sha256', sha]);
    expect(approved).toMatchObject({ status: 'CREATED', status_reason: null, total: 3 });
    expect((await sb.ok(['units', id])).map((u: { item_id: string }) => u.item_id)).toEqual(['x', 'y', 'z']);
    const again = await sb.cli(['approve', id, '--code-sha256', sha]);
    expect(again.stderr).toBe(`abp: job ${id} is CREATED; it is not waiting for code approval`);

    // The same code, approved once by its hash, runs at once for a new job.
    const same = await sb.ok(['create', '--spec', spec('dynamic', { code })]);
    expect(same).toMatchObject({ status_reason: null, total: 3 });

    // Changed code is a new hash: pending again, and the old approval does not fit it.
    const changed = `${code}\n// changed`;
    const next = await sb.ok(['create', '--spec', spec('dynamic', { code: changed })]);
    expect(next.status_reason).toBe('pending_approval');
    expect(next.approval.code_sha256).not.toBe(sha);
    const stale = await sb.cli(['approve', String(next.job_id), '--code-sha256', sha]);
    expect(stale.stderr).toContain(`abp: code_sha256: ${sha} does not match job ${next.job_id}'s code (sha256 ${next.approval.code_sha256}, of the code with its context and limits)`);
    const preview = await sb.ok(['preview', '--spec', spec('dynamic', { code: changed })]);
    expect(preview).toMatchObject({ count: null, approval: { status: 'pending_approval', code_sha256: next.approval.code_sha256 } });
  });

  it('dynamic code that fails after approval leaves the job pending and records no approval', async () => {
    const code = 'export default async function* () { yield { a: 1 }; throw new Error("flaky source"); }';
    const created = await sb.ok(['create', '--spec', spec('dynamic', { code })]);
    const r = await sb.cli(['approve', String(created.job_id), '--code-sha256', created.approval.code_sha256]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^abp: dynamic code threw after 1 items: Error: flaky source/);
    expect(await sb.status(created.job_id)).toMatchObject({ status: 'CREATED', status_reason: 'pending_approval', total: 0 });
    expect((await sb.queryOne<{ n: number }>('select count(*) n from code_approvals'))?.n).toBe(0);
    expect((await sb.queryOne<{ n: number }>('select count(*) n from work_units'))?.n).toBe(0);
  });
});
