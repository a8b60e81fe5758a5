import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { Sandbox, sleep } from '../helpers/cli.js';
import { call, connectInMemory } from '../helpers/mcp.js';

/*
 * A RUNNING job whose executor died says so: `abp status` (human and --json) and
 * MCP get_job_status show that no executor is alive and what to do, instead of a
 * job that only looks slow (both stores).
 */
describe('a RUNNING job with no live executor', () => {
  let sb: Sandbox | undefined;
  let app: App | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
    await sb?.cleanup();
    sb = undefined;
  });

  it('status says no executor is alive once the executor is killed, and that one is while it runs', async () => {
    // One-second leases: an executor is taken for dead three heartbeats (one second) after its last.
    const s = (sb = new Sandbox({ ABP_LEASE_SECONDS: '1', ABP_EXECUTOR_IDLE_SECONDS: '60' }));
    const file = s.path('items.csv');
    writeFileSync(file, 'id\nslow\n');
    const job = await s.ok(['create', '--name', 'orphan', '--intent', 'wait', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id', '--worker', 'shell', '-w', 'command=sleep', '-w', 'args:=["300"]']);
    const id = job.job_id as number;
    await s.ok(['start', String(id), '--skip-test']);
    await s.waitFor(id, (st) => st.counts.running === 1, 30_000);

    const alive = await s.ok(['status', String(id)]);
    expect(alive.status).toBe('RUNNING');
    expect(alive.executors).toMatchObject({ live: 1, warning: null });

    const [executor] = await s.query<{ pid: number }>('select pid from executors');
    process.kill(Number(executor!.pid), 'SIGKILL');

    let orphaned: any;
    for (let i = 0; ; i++) {
      orphaned = await s.ok(['status', String(id)]);
      if (orphaned.executors?.live === 0) break;
      if (i > 300) throw new Error(`status never said the executor is gone: ${JSON.stringify(orphaned)}`);
      await sleep(100);
    }
    expect(orphaned.status).toBe('RUNNING');
    expect(orphaned.executors.warning).toMatch(new RegExp(`no executor is alive to run this job \\(the last heartbeat was \\d+s ago\\); \`abp start ${id}\` launches one`));
    const human = await s.cli(['status', String(id)]);
    expect(human.stdout).toContain('warning: no executor is alive to run this job');

    // The assistant sees the same through MCP.
    app = await createApp(resolveConfig(s.env));
    const client = await connectInMemory(app);
    const viaMcp = await call(client, 'get_job_status', { job_id: id });
    expect(viaMcp.executors).toMatchObject({ live: 0, warning: expect.stringContaining('no executor is alive') });
    await client.close();

    // A job that is not waiting for an executor carries no such note.
    await s.ok(['cancel', String(id)]);
    expect((await s.ok(['status', String(id)])).executors).toBeNull();
  });
});
