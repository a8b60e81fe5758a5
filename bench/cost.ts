/**
 * What one job costs: 1,000 http-llm units on the loopback mocks' prices, run
 * online, in a provider batch, and re-run with the response cache, each by the
 * real CLI with a detached executor (whole processes, as a user runs them). The
 * dollars are exact for the mock's usage; the wall time is the job's own clock.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_ENTRY } from '../src/executor/launcher.js';
import { startMockBatches, type BatchMockApi, type MockBatches } from '../test/fixtures/mock-batches.js';
import { jobMs, median, spread, type BenchRow } from './table.js';

const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);
const UNITS = 1000;
/** Priced from the built-in table (claude-haiku-4-5: $1 in, $5 out per million tokens; gpt-4.1-nano: $0.10 and $0.40); the mock answers 100 in, 20 out. */
const MODEL = { anthropic: 'claude-haiku-4-5', openai: 'gpt-4.1-nano' } as const;

interface Run {
  cost: number;
  requests: number;
  ms: number;
}

class Home {
  readonly dir = mkdtempSync(join(tmpdir(), 'abp-bench-cost-'));
  readonly env = { ...process.env, ABP_HOME: this.dir, ABP_SKIP_TEST: '1', ABP_BATCH_POLL_SECONDS: '0.2', ABP_EXECUTOR_IDLE_SECONDS: '5', ANTHROPIC_API_KEY: 'sk-bench', OPENAI_API_KEY: 'sk-bench' };

  /** One CLI process, asynchronously: the mock answering it lives in this process's event loop. */
  async cli(args: string[]): Promise<any> {
    const { stdout } = await promisify(execFile)(process.execPath, [CLI_ENTRY, ...args, '--json'], { env: this.env, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
    return JSON.parse(stdout);
  }

  async run(spec: Record<string, unknown>): Promise<any> {
    const file = join(this.dir, `spec-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify(spec));
    const id = (await this.cli(['create', '--spec', file])).job_id as number;
    await this.cli(['start', String(id)]);
    for (;;) {
      const s = await this.cli(['status', String(id)]);
      if (['COMPLETED', 'FAILED', 'PAUSED', 'CANCELLED'].includes(s.status)) {
        if (s.status !== 'COMPLETED') throw new Error(`bench/cost: job ${id} ended ${s.status} ${s.status_reason ?? ''}`);
        return s;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  close(): void {
    // The detached executor leaves by itself once idle; its files go now.
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function spec(api: BatchMockApi, m: MockBatches, items: string, over: Record<string, unknown>): Record<string, unknown> {
  const { worker_config, ...rest } = over;
  return {
    name: 'cost bench',
    user_intent: 'Label the text.',
    enumerator_type: 'csv',
    enumerator_config: { file_path: items, id_column: 'id' },
    worker_type: 'http-llm',
    worker_config: { api, base_url: m.baseUrl, model: MODEL[api], ...(worker_config as object) },
    max_workers: 16,
    ...rest,
  };
}

async function once(api: BatchMockApi): Promise<{ online: Run; batch: Run; rerun: Run }> {
  const m = await startMockBatches(api, { processMs: 200 });
  const home = new Home();
  try {
    const items = join(home.dir, 'items.csv');
    writeFileSync(items, ['id,text', ...Array.from({ length: UNITS }, (_, i) => `i${i},text of item ${i}`)].join('\n') + '\n');
    const requests = () => m.counters.online + m.creates.reduce((n, c) => n + c.custom_ids.length, 0);
    const measure = async (over: Record<string, unknown>): Promise<Run> => {
      const before = requests();
      const s = await home.run(spec(api, m, items, over));
      return { cost: s.cost_usd, requests: requests() - before, ms: jobMs({ started_at: Date.parse(s.started_at), finished_at: Date.parse(s.finished_at) }) };
    };
    const online = await measure({});
    const batch = await measure({ cache: true, worker_config: { batch: true } });
    // The same job again: every answer is in the cache.
    const rerun = await measure({ cache: true, worker_config: { batch: true } });
    return { online, batch, rerun };
  } finally {
    home.close();
    await m.close();
  }
}

export async function run(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const api of ['anthropic', 'openai'] as const) {
    const runs: { online: Run; batch: Run; rerun: Run }[] = [];
    for (let i = 0; i < RUNS; i++) runs.push(await once(api));
    const online = runs.map((r) => r.online.cost);
    const anchor = `online, ${UNITS.toLocaleString('en')} requests: $${median(online).toFixed(4)}, ${spread(runs.map((r) => r.online.ms / 1000), 1, ' s')}`;
    for (const [mode, label, target] of [
      ['batch', 'batch mode (`batch: true`)', '≤ 0.5×'],
      ['rerun', 'batch mode + `cache: true`, the same job re-run', '0×'],
    ] as const) {
      const cost = runs.map((r) => r[mode].cost);
      const ratios = runs.map((r, k) => r[mode].cost / (online[k] as number));
      rows.push({
        what: `cost of ${UNITS.toLocaleString('en')} http-llm units (${api}, ${MODEL[api]} list price, mock usage 100 in / 20 out), ${label}`,
        measure: 'job cost_usd; API requests the mock received; job wall time (batches polled every 0.2 s, mock batches end after 0.2 s)',
        figure: `$${median(cost).toFixed(4)}; ${median(runs.map((r) => r[mode].requests))} requests; ${spread(runs.map((r) => r[mode].ms / 1000), 1, ' s')}`,
        anchor,
        ratio: median(ratios),
        ratio_note: `cost ÷ online (${spread(ratios, 2, '×')})`,
        target,
        raw: { runs },
      });
    }
  }
  return rows;
}
