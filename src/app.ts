import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveConfig, type AbpConfig } from './config.js';
import type { Registry } from './contracts/registry.js';
import type { Worker } from './contracts/worker.js';
import type { JobExecutor } from './executor/job-executor.js';
import type { Orchestrator } from './orchestrator/orchestrator.js';
import { PACKAGE_ROOT } from './package-root.js';
import type { Repository } from './store/repository.js';
import type { TaskRows } from './store/task-store.js';

export const VERSION: string = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;

/** Every front end's app: an executor's pieces, and the orchestrator and MCP tasks' rows. */
export interface App extends ExecutorApp {
  orchestrator: Orchestrator;
  /** MCP tasks' rows (which job a task follows, for whom); the MCP front end's task store reads and writes them. */
  tasks: TaskRows;
}

/** The store alone, for reads that need no orchestration (`abp status`, `abp list`): no worker, enumerator or job spec loads. */
export async function openStore(config: AbpConfig): Promise<Repository> {
  const { openRepository } = await import('./store/database.js');
  return openRepository({ db: config.db, busyTimeoutMs: config.busyTimeoutMs, pgPoolSize: config.pgPoolSize, autoMigrate: config.autoMigrate });
}

/** What `abp executor` runs on: the store and its executor, without the orchestrator, enumerators, launcher or MCP tasks. */
export interface ExecutorApp {
  config: AbpConfig;
  repo: Repository;
  /**
   * A foreground executor; `overrides` adjust its config (e.g. from `abp executor` flags).
   * `launchSlot`: the slot a launcher claimed for it (ABP_LAUNCH_SLOT), which its registration replaces.
   */
  createExecutor(overrides?: Partial<AbpConfig>, launchSlot?: string): JobExecutor;
  close(): Promise<void>;
}

/** The plug-in workers and sync jobs' own writer, `sync-apply` (it looks up its transform worker in this registry, lazily, hence the getter). */
async function loadWorkers(): Promise<Registry<Worker<any>>> {
  const [{ workers: plugins }, { createSyncApplyWorker }, { Registry }] = await Promise.all([
    import('../workers/index.js'),
    import('./sync/apply-worker.js'),
    import('./contracts/registry.js'),
  ]);
  const workers: Registry<Worker<any>> = new Registry<Worker<any>>('worker_type', [...plugins.list(), createSyncApplyWorker(() => workers)]);
  return workers;
}

/**
 * An executor's pieces, which the full app shares: one store, one set of
 * workers, one synthesizer and one list of job types.
 */
async function executorParts(config: AbpConfig) {
  const [workers, { JobExecutor }, { PromptSynthesizer }, { SyncJobs }, repo] = await Promise.all([
    loadWorkers(),
    import('./executor/job-executor.js'),
    import('./executor/prompt-synthesizer.js'),
    import('./sync/sync-jobs.js'),
    openStore(config),
  ]);
  const synthesizer = new PromptSynthesizer();
  // The job types besides batch (the Orchestrator's own): how a spec of each becomes a job, and what its end does.
  const jobTypes = [new SyncJobs(repo)];
  const app: ExecutorApp = {
    config,
    repo,
    createExecutor: (overrides = {}, launchSlot) =>
      new JobExecutor({ repo, workers, synthesizer, jobTypes, config: Object.freeze({ ...config, ...overrides }), version: VERSION, launchSlot }),
    close: () => repo.close(),
  };
  return { app, workers, synthesizer, jobTypes };
}

/**
 * What `abp executor` opens: an idle executor (the one `abp start` launches,
 * waiting for work) holds what claiming and running units needs, and never
 * loads what only creates and moves jobs (the orchestrator, enumerators, job specs).
 */
export async function createExecutorApp(config: AbpConfig = resolveConfig()): Promise<ExecutorApp> {
  return (await executorParts(config)).app;
}

/**
 * The composition root: the one place that wires concrete pieces together. Its
 * pieces load here, not when this module does, so a CLI command that opens no
 * store pays for none of them.
 */
export async function createApp(config: AbpConfig = resolveConfig()): Promise<App> {
  const [{ app, workers, synthesizer, jobTypes }, { enumerators }, { Launcher }, { Orchestrator }, { TaskRows }] = await Promise.all([
    executorParts(config),
    import('../enumerators/index.js'),
    import('./executor/launcher.js'),
    import('./orchestrator/orchestrator.js'),
    import('./store/task-store.js'),
  ]);
  const launcher = new Launcher(app.repo, config, VERSION);
  const orchestrator = new Orchestrator({ repo: app.repo, config, enumerators, workers, synthesizer, launcher, jobTypes });
  return { ...app, orchestrator, tasks: new TaskRows(app.repo) };
}
