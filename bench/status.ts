/**
 * Reading a job's status when the job is large: `get_job_status` on a job of
 * 1,000,000 units, in process and as an MCP round trip over stdio against a real
 * `abp mcp` process. Counters live on the job row, so a status is one row read;
 * the anchors, measured on the same database in the same run, are the floor (a raw
 * better-sqlite3 read of that row, and an MCP ping on the same connection).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import Database from 'better-sqlite3';
import { createApp } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { CLI_ENTRY } from '../src/executor/launcher.js';
import { median, spread, type BenchRow } from './table.js';

const UNITS = Number(process.env.ABP_BENCH_STATUS_UNITS ?? 1_000_000);
const CALLS = 200;

/** Median of each of `RUNS` batches of CALLS timed calls, in ms. */
async function timed(runs: number, fn: () => Promise<unknown> | unknown): Promise<number[]> {
  const medians: number[] = [];
  for (let r = 0; r < runs; r++) {
    const ms: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const t = performance.now();
      await fn();
      ms.push(performance.now() - t);
    }
    medians.push(median(ms));
  }
  return medians;
}

export async function run(): Promise<BenchRow[]> {
  const home = mkdtempSync(join(tmpdir(), 'abp-bench-status-'));
  const env = { ABP_HOME: home, ABP_DB: join(home, 'abp.db') };
  try {
    const csv = join(home, 'items.csv');
    const lines = ['id,text'];
    for (let i = 1; i <= UNITS; i++) lines.push(`${i},row ${i}`);
    writeFileSync(csv, `${lines.join('\n')}\n`);
    const app = await createApp(resolveConfig(env));
    const job = await app.orchestrator.createJob({
      name: 'a million units',
      user_intent: 'nothing',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv, id_column: 'id' },
      worker_type: 'shell',
      worker_config: { command: 'true' },
    });
    const id = job.job_id;
    const inProcess = await timed(5, () => app.orchestrator.status(id));
    await app.close();

    const raw = new Database(env.ABP_DB, { readonly: true });
    const stmt = raw.prepare('select * from jobs where id = ?');
    const floor = await timed(5, () => stmt.get(id));
    raw.close();

    const client = new Client({ name: 'abp-bench', version: '1' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [CLI_ENTRY, 'mcp'], env: { ...process.env, ...env } as Record<string, string>, stderr: 'ignore' }));
    try {
      const check = (await client.callTool({ name: 'get_job_status', arguments: { job_id: id } })) as { structuredContent?: { total?: number } };
      if (check.structuredContent?.total !== UNITS) throw new Error(`bench/status: get_job_status says ${JSON.stringify(check.structuredContent)}`);
      const mcp: number[] = [];
      const ping: number[] = [];
      for (let r = 0; r < 5; r++) {
        // Interleaved, so drift touches both alike.
        mcp.push(...(await timed(1, () => client.callTool({ name: 'get_job_status', arguments: { job_id: id } }))));
        ping.push(...(await timed(1, () => client.ping())));
      }
      const n = UNITS.toLocaleString('en');
      return [
        {
          what: `status of a job of ${n} units`,
          measure: `orchestrator.status (what get_job_status runs), median of ${CALLS} calls per run`,
          figure: spread(inProcess, 3, ' ms'),
          anchor: `raw better-sqlite3 read of the job row: ${spread(floor, 3, ' ms')}`,
          ratio: median(inProcess) / median(floor),
          ratio_note: 'abp ÷ raw row read',
          target: '< 5 ms median',
          raw: { in_process_ms: inProcess, raw_row_ms: floor },
        },
        {
          what: `MCP \`get_job_status\` round trip over stdio, job of ${n} units`,
          measure: `real SDK client ↔ \`abp mcp\` process, median of ${CALLS} calls per run`,
          figure: spread(mcp, 2, ' ms'),
          anchor: `MCP ping on the same connection: ${spread(ping, 2, ' ms')}`,
          ratio: median(mcp) / median(ping),
          ratio_note: 'get_job_status ÷ ping',
          target: '< 10 ms median',
          raw: { mcp_ms: mcp, ping_ms: ping },
        },
      ];
    } finally {
      await client.close();
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}
