import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { AbpConfig } from '../config.js';
import { PACKAGE_ROOT } from '../package-root.js';
import type { Repository } from '../store/repository.js';

export const CLI_ENTRY = join(PACKAGE_ROOT, 'dist', 'cli', 'main.js');

export interface LaunchResult {
  started: boolean;
  pid?: number;
  log?: string;
}

/**
 * Starts a detached executor when none is alive. Liveness is a fresh heartbeat
 * in the executors table, never a bare PID.
 */
export class Launcher {
  constructor(
    private readonly repo: Repository,
    private readonly config: AbpConfig,
  ) {}

  async ensureExecutor(): Promise<LaunchResult> {
    const live = await this.repo.liveExecutors(this.config.heartbeatMs * 3);
    if (live.length > 0) return { started: false };
    const logDir = join(this.config.home, 'logs');
    mkdirSync(logDir, { recursive: true });
    const log = join(logDir, 'executor.log');
    const fd = openSync(log, 'a');
    try {
      const child = spawn(process.execPath, [CLI_ENTRY, 'executor'], {
        detached: true, // its own session: it outlives the CLI, the MCP server or the terminal
        stdio: ['ignore', fd, fd],
        // abp's own HTTP key stays with the server: executors and their workers never need it.
        env: { ...process.env, ABP_API_KEY: undefined, ABP_HOME: this.config.home, ABP_DB: this.config.db },
      });
      child.unref();
      return { started: true, pid: child.pid, log };
    } finally {
      closeSync(fd);
    }
  }
}
