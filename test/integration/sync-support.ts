import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import type { JobExecutor } from '../../src/executor/job-executor.js';
import { createTestDatabaseSync, dropTestDatabase, TEST_BACKEND } from '../helpers/postgres.js';

/**
 * An abp installation in a temp folder (its own SQLite file) with a real
 * executor running in this process, so that the orchestrator's start() finds a
 * live executor instead of spawning one. Sync runs go through the ordinary job
 * flow: createJob (the plan) → start → executor → COMPLETED/FAILED → state saved.
 */
export class SyncBed {
  readonly dir: string;
  private constructor(
    dir: string,
    readonly app: App,
    private readonly executor: JobExecutor,
    private readonly loop: Promise<void>,
    private readonly pgDatabase: string | undefined,
  ) {
    this.dir = dir;
  }

  static async open(): Promise<SyncBed> {
    const dir = mkdtempSync(join(tmpdir(), 'abp-sync-'));
    const home = join(dir, 'home');
    // abp's own store follows the test project: a SQLite file, or a fresh PostgreSQL database.
    const pgDatabase = TEST_BACKEND === 'postgres' ? createTestDatabaseSync() : undefined;
    const app = await createApp(
      resolveConfig({
        ABP_HOME: home,
        ABP_DB: pgDatabase ?? join(home, 'abp.db'),
        ABP_POLL_MS: '20',
        ABP_RETRY_BASE_MS: '10',
        ABP_RETRY_MAX_MS: '20',
        ABP_EXECUTOR_IDLE_SECONDS: '0',
        ABP_SKIP_TEST: '',
      }),
    );
    const executor = app.createExecutor();
    const loop = executor.run();
    // Wait until it has registered, so start() sees a live executor.
    for (let i = 0; i < 100 && (await app.repo.liveExecutors(60_000)).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    return new SyncBed(dir, app, executor, loop, pgDatabase);
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  /** Writes files under a folder: {relative path: content}. */
  files(folder: string, files: Record<string, string>): string {
    const root = this.path(folder);
    mkdirSync(root, { recursive: true });
    for (const [name, content] of Object.entries(files)) {
      mkdirSync(dirname(join(root, name)), { recursive: true });
      writeFileSync(join(root, name), content);
    }
    return root;
  }

  /** {relative path: content} of every file under a folder. */
  read(folder: string): Record<string, string> {
    const root = this.path(folder);
    const out: Record<string, string> = {};
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const full = join(d, e.name);
        if (e.isDirectory()) walk(full);
        else out[relative(root, full)] = readFileSync(full, 'utf8');
      }
    };
    walk(root);
    return out;
  }

  /** One real run: plan (create), start without the test unit, wait, save state. Returns the job, its status and summary. */
  async run(sync: Record<string, unknown>, extra: Record<string, unknown> = {}) {
    const { orchestrator } = this.app;
    const job = (await orchestrator.createJob({ sync, max_retries: 0, ...extra })) as any;
    let status = job.status as string;
    if (status === 'CREATED') {
      const started = await orchestrator.skipTest(job.job_id, { waitSeconds: 30 });
      status = started.job.status;
    }
    await orchestrator.sync.commit(job.job_id);
    const summary = (await orchestrator.sync.summary(job.job_id)) as any;
    return { job, status, summary, plan: job.sync };
  }

  /** The dry run. */
  async plan(sync: Record<string, unknown>) {
    return (await this.app.orchestrator.preview({ sync })) as any;
  }

  async events(jobId: number | null, type: string): Promise<any[]> {
    const rows = jobId === null ? await this.app.repo.eventsAfter(0, [type], 10_000) : await this.app.repo.listEvents(jobId, 0, 10_000);
    return rows.filter((e) => e.type === type && (jobId === null ? e.job_id === null : true)).map((e) => JSON.parse(e.data));
  }

  async close(): Promise<void> {
    await this.executor.stop();
    await this.loop;
    await this.app.close();
    if (this.pgDatabase) await dropTestDatabase(this.pgDatabase);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** n files named f001.txt … with distinct content. */
export function numberedFiles(n: number, prefix = 'f'): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 1; i <= n; i++) out[`${prefix}${String(i).padStart(3, '0')}.txt`] = `content of ${prefix}${i}\n`;
  return out;
}
