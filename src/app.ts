import { resolveConfig, type AbpConfig } from './config.js';
import { Registry } from './contracts/registry.js';
import type { Worker } from './contracts/worker.js';
import { JobExecutor, type JobExecutorDeps } from './executor/job-executor.js';
import { PromptSynthesizer } from './executor/prompt-synthesizer.js';
import { openStore } from './open-store.js';
import type { Orchestrator } from './orchestrator/orchestrator.js';
import type { Repository } from './store/repository.js';
import type { TaskRows } from './store/task-store.js';
import { createSyncApplyWorker } from './sync/apply-worker.js';
import { SyncJobs } from './sync/sync-jobs.js';
import { VERSION } from './version.js';
import { workers as plugins } from '../workers/index.js';

export { openStore, VERSION };

/** Every front end's app: an executor's pieces, and the orchestrator and MCP tasks' rows. */
export interface App extends ExecutorApp {
  orchestrator: Orchestrator;
  /** MCP tasks' rows (which job a task follows, for whom); the MCP front end's task store reads and writes them. */
  tasks: TaskRows;
}

/** What `abp executor` runs on: the store and its executor, without the orchestrator, enumerators, launcher or MCP tasks. */
export interface ExecutorApp {
  config: AbpConfig;
  repo: Repository;
  /**
   * A foreground executor; `overrides` adjust its config (e.g. from `abp executor` flags).
   * `launchSlot`: the slot a launcher claimed for it (ABP_LAUNCH_SLOT), which its registration replaces;
   * `onWork`: called after each pass that found work.
   */
  createExecutor(overrides?: Partial<AbpConfig>, options?: Pick<JobExecutorDeps, 'launchSlot' | 'onWork'>): JobExecutor;
  close(): Promise<void>;
}

/**
 * An executor's pieces, which the full app shares: one store, one set of
 * workers (the plug-ins and sync jobs' own writer, `sync-apply`, which looks up
 * its transform worker in this registry, lazily, hence the getter), one
 * synthesizer and one list of job types. Their modules load with this one:
 * every command that imports it opens the store to run or create jobs.
 */
async function executorParts(config: AbpConfig) {
  const repo = await openStore(config);
  const workers: Registry<Worker<any>> = new Registry<Worker<any>>('worker_type', [...plugins.list(), createSyncApplyWorker(() => workers)]);
  const synthesizer = new PromptSynthesizer();
  // The job types besides batch (the Orchestrator's own): how a spec of each becomes a job, and what its end does.
  const jobTypes = [new SyncJobs(repo)];
  const app: ExecutorApp = {
    config,
    repo,
    createExecutor: (overrides = {}, options = {}) =>
      new JobExecutor({ repo, workers, synthesizer, jobTypes, config: Object.freeze({ ...config, ...overrides }), version: VERSION, ...options }),
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
 * The composition root: the one place that wires concrete pieces together. The
 * executor's pieces load with this module, in one bundle chunk (each dynamic
 * import is a place where the bundle splits: the executor loaded 39 chunks
 * through ~125 module resolutions); the orchestrator's load here, so that
 * `abp executor` never loads them. Commands that open no store never import
 * this module (`abp --version` reads src/version.ts).
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
