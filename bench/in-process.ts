import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { jobMs } from './table.js';

/**
 * Runs one job of `units` CSV rows (columns id, text) to the end with an
 * executor in this process, on a fresh SQLite file, and returns how long it ran
 * by its own clock. `spec` is the JobSpec without its enumerator; `slots` is both
 * the executor's capacity and the job's max_workers.
 */
export async function timeInProcessJob(units: number, slots: number, spec: Record<string, unknown>): Promise<number> {
  const home = mkdtempSync(join(tmpdir(), 'abp-bench-job-'));
  try {
    const csv = join(home, 'items.csv');
    writeFileSync(csv, ['id,text', ...Array.from({ length: units }, (_, k) => `${k + 1},item ${k + 1}`)].join('\n'));
    const app = await createApp(resolveConfig({ ABP_HOME: home, ABP_DB: join(home, 'abp.db'), ABP_MAX_WORKERS: String(slots), ABP_EXECUTOR_IDLE_SECONDS: '0', ABP_POLL_MS: '20' }));
    const job = await app.orchestrator.createJob({ ...spec, enumerator_type: 'csv', enumerator_config: { file_path: csv, id_column: 'id' }, max_workers: slots });
    const executor = app.createExecutor({ idleExitMs: 0 });
    const running = executor.run();
    await app.orchestrator.skipTest(job.job_id);
    const done = await app.orchestrator.waitUntilSettled(job.job_id, 600_000);
    await executor.stop();
    await running;
    await app.close();
    if (done.status !== 'COMPLETED') throw new Error(`bench job "${String(spec.name)}" ended ${done.status} (${done.failed} failed)`);
    return jobMs(done);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}
