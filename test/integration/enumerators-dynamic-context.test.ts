import { writeFileSync } from 'node:fs';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { Sandbox } from '../helpers/cli.js';
import { call, connectInMemory } from '../helpers/mcp.js';

/*
 * A dynamic job's context: shown with the code wherever the code is shown for
 * approval, passed to the code as ctx.context, and part of the approved hash.
 *
 * Changed deliberately (issue 22, class 3): the context used to be outside the
 * hash, so code approved once ran at once with any other context. An approval
 * now binds the code with its context and limits; another context waits for a
 * person again.
 */

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

const code = 'export default async function* (ctx) { for (const n of ctx.context.names) yield { name: n, region: ctx.context.region, _id: n }; }';

const spec = (context: Record<string, unknown>, file = 'spec.json') => {
  const path = sb.path(file);
  writeFileSync(
    path,
    JSON.stringify({ name: 'ctx job', user_intent: 'greet', enumerator_type: 'dynamic', enumerator_config: { code, context }, worker_type: 'shell', worker_config: { command: 'true' } }),
  );
  return path;
};

describe('dynamic enumerator context through the CLI', () => {
  it('approve shows the context and limits with the code; the same code with another context needs a new approval', async () => {
    const eu = { region: 'eu', names: ['ada', 'bo'] };
    const created = await sb.ok(['create', '--spec', spec(eu)]);
    expect(created).toMatchObject({ status: 'CREATED', status_reason: 'pending_approval', total: 0 });
    expect(created.approval).toMatchObject({ code, context: eu });
    const sha = created.approval.code_sha256 as string;
    const id = String(created.job_id);

    const shown = await sb.ok(['approve', id]);
    expect(shown.approval).toMatchObject({ code, context: eu, code_sha256: sha });
    const human = await sb.cli(['approve', id]);
    expect(human.stdout).toContain(
      `${code}\n\nwith this context (ctx.context):\n${JSON.stringify(eu, null, 2)}\n\nlimits: timeout_seconds 60, max_memory_mb 256, limit none\n\nsha256 ${sha}`,
    );

    const preview = await sb.cli(['preview', '--spec', spec({ region: 'us', names: ['cy'] }, 'preview.json')]);
    expect(preview.stdout).toContain(`with this context (ctx.context):\n${JSON.stringify({ region: 'us', names: ['cy'] }, null, 2)}`);

    await sb.ok(['approve', id, '--code-sha256', sha]);
    const units = await sb.ok(['units', id]);
    expect(units.map((u: { item_id: string }) => u.item_id)).toEqual(['ada', 'bo']);

    // The same code and context again: approved, so it runs at once.
    const again = await sb.ok(['create', '--spec', spec({ region: 'eu', names: ['ada', 'bo'] }, 'again.json')]);
    expect(again).toMatchObject({ status_reason: null, total: 2 });

    // Another context, the same code: a new hash, pending until a person approves it.
    const us = await sb.ok(['create', '--spec', spec({ region: 'us', names: ['cy', 'di', 'ed'] }, 'us.json')]);
    expect(us).toMatchObject({ status_reason: 'pending_approval', total: 0 });
    expect(us.approval.code_sha256).not.toBe(sha);
    expect((await sb.cli(['approve', String(us.job_id), '--code-sha256', sha])).stderr).toContain(`does not match job ${us.job_id}'s code`);
    expect(await sb.ok(['approve', String(us.job_id), '--code-sha256', us.approval.code_sha256])).toMatchObject({ total: 3 });
    const usUnits = await sb.ok(['units', String(us.job_id)]);
    expect(usUnits.map((u: { item_id: string }) => u.item_id)).toEqual(['cy', 'di', 'ed']);
    const unit = await sb.ok(['unit', String(usUnits[0].unit_id)]);
    expect(JSON.stringify(unit)).toContain('"region":"us"');
  });

  it('a context that is not a JSON object is refused by name, and no job is created', async () => {
    const path = sb.path('bad.json');
    writeFileSync(path, JSON.stringify({ name: 'n', user_intent: 'i', enumerator_type: 'dynamic', enumerator_config: { code, context: ['eu'] }, worker_type: 'shell', worker_config: { command: 'true' } }));
    const r = await sb.cli(['create', '--spec', path]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe('abp: enumerator_config.context: must be a JSON object, e.g. {"region": "eu"}');
  });
});

describe('dynamic enumerator context through MCP', () => {
  let app: App;
  beforeEach(async () => {
    app = await createApp(resolveConfig(sb.env));
  });
  afterEach(async () => {
    await app.close();
  });

  const connect = (capabilities: Record<string, unknown> = {}): Promise<Client> => connectInMemory(app, capabilities);

  const mcpSpec = (context: Record<string, unknown>) => ({
    name: 'ctx',
    user_intent: 'greet',
    enumerator_type: 'dynamic',
    enumerator_config: { code, context },
    worker_type: 'shell',
    worker_config: { command: 'true' },
  });

  it('create_job and approve_code return the context and limits with the code, and the person’s dialog shows them', async () => {
    const client = await connect();
    const pending = await call(client, 'create_job', mcpSpec({ region: 'eu', names: ['ada'] }));
    expect(pending.approval).toMatchObject({ status: 'pending_approval', code, context: { region: 'eu', names: ['ada'] }, limits: { timeout_seconds: 60, max_memory_mb: 256, limit: null } });
    const shown = await call(client, 'approve_code', { job_id: pending.job_id });
    expect(shown.approval).toMatchObject({ code, context: { region: 'eu', names: ['ada'] }, code_sha256: pending.approval.code_sha256 });
    await client.close();

    const asked: string[] = [];
    const person = await connect({ elicitation: {} });
    person.setRequestHandler(ElicitRequestSchema, async (request) => {
      asked.push(request.params.message);
      return { action: 'accept', content: { approve: true } };
    });
    const approved = await call(person, 'approve_code', { job_id: pending.job_id });
    expect(asked).toHaveLength(1);
    expect(asked[0]).toContain(`with this context (ctx.context):\n${JSON.stringify({ region: 'eu', names: ['ada'] }, null, 2)}`);
    expect(asked[0]).toContain('limits: timeout_seconds 60, max_memory_mb 256, limit none');
    expect(approved.total).toBe(1);
    // Another context is another approval: the person is asked again, with the new values in front of them.
    const again = await call(person, 'create_job', mcpSpec({ region: 'us', names: ['bo', 'cy'] }));
    expect(asked).toHaveLength(2);
    expect(asked[1]).toContain('"region": "us"');
    expect(again.total).toBe(2);
    await person.close();
  });
});
