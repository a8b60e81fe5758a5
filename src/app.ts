import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { enumerators } from '../enumerators/index.js';
import { workers } from '../workers/index.js';
import { resolveConfig, type AbpConfig } from './config.js';
import { JobExecutor } from './executor/job-executor.js';
import { Launcher } from './executor/launcher.js';
import { Orchestrator } from './orchestrator/orchestrator.js';
import { PromptSynthesizer } from './orchestrator/prompt-synthesizer.js';
import { PACKAGE_ROOT } from './package-root.js';
import { openRepository } from './store/database.js';
import type { Repository } from './store/repository.js';

export const VERSION: string = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;

export interface App {
  config: AbpConfig;
  repo: Repository;
  orchestrator: Orchestrator;
  /** A foreground executor; `overrides` adjust its config (e.g. from `abp executor` flags). */
  createExecutor(overrides?: Partial<AbpConfig>): JobExecutor;
  close(): Promise<void>;
}

/** The composition root: the one place that wires concrete pieces together. */
export async function createApp(config: AbpConfig = resolveConfig()): Promise<App> {
  const repo = await openRepository({ db: config.db, busyTimeoutMs: config.busyTimeoutMs, pgPoolSize: config.pgPoolSize, autoMigrate: config.autoMigrate });
  const synthesizer = new PromptSynthesizer();
  const launcher = new Launcher(repo, config);
  const orchestrator = new Orchestrator({ repo, config, enumerators, workers, synthesizer, launcher });
  return {
    config,
    repo,
    orchestrator,
    createExecutor: (overrides = {}) =>
      new JobExecutor({ repo, workers, synthesizer, config: Object.freeze({ ...config, ...overrides }), version: VERSION }),
    close: () => repo.close(),
  };
}
