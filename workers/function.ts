import { access, constants } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import type { UnitOutcome, Worker, WorkerHealth } from '../src/contracts/worker.js';
import type { FunctionPool } from './function-pool.js';

const config = z.strictObject({
  module: z
    .string()
    .min(1)
    // Resolved once, when the job is created, so executors started elsewhere find the same file.
    .transform((p) => resolve(p))
    .describe('Path to a JS module (ESM or CommonJS); relative paths are resolved when the job is created.'),
  export_name: z.string().min(1).default('default').describe('The export to call: default, or a named export.'),
  max_threads: z.int().positive().max(256).optional().describe('Worker threads for this module (default: the number of CPUs).'),
});
type FunctionConfig = z.infer<typeof config>;

/** What the function receives: one argument, the unit. */
export interface FunctionTask {
  item: Record<string, unknown>;
  prompt: string;
  unit_id: number;
  job_id: number;
  attempt: number;
  work_dir: string;
}

/** One piscina pool per module, with abp's batching on top, shared by every job that uses it in this executor. */
const pools = new Map<string, FunctionPool>();

function poolFor(cfg: FunctionConfig): FunctionPool | Promise<FunctionPool> {
  return pools.get(`${cfg.module}#${cfg.max_threads ?? ''}`) ?? newPool(cfg);
}

async function newPool(cfg: FunctionConfig): Promise<FunctionPool> {
  // Loaded (with piscina) on a module's first unit, not when the worker registry loads;
  // later units find their pool without an import() or an await. The lookup below runs
  // after the await, so two first units still share one pool.
  const { FunctionPool } = await import('./function-pool.js');
  const key = `${cfg.module}#${cfg.max_threads ?? ''}`;
  let pool = pools.get(key);
  if (!pool) {
    pool = new FunctionPool(cfg.module, cfg.max_threads ?? availableParallelism());
    pools.set(key, pool);
  }
  return pool;
}

function isAbort(err: unknown): boolean {
  return (err as { name?: string } | null)?.name === 'AbortError';
}

export const functionWorker: Worker<FunctionConfig> = {
  type: 'function',
  description: "Calls a JS module's export per unit on piscina worker threads (CPU-bound work); a throw fails the unit with its message.",
  configSchema: config as unknown as z.ZodType<FunctionConfig>,
  healthProbes: [],

  async run(unit, cfg, ctx): Promise<UnitOutcome> {
    const started = Date.now();
    const task: FunctionTask = { item: unit.item, prompt: unit.prompt, unit_id: unit.unit_id, job_id: unit.job_id, attempt: unit.attempt, work_dir: unit.work_dir };
    try {
      // On abort piscina terminates the thread running the task, so even a busy loop stops.
      const value: unknown = await (await poolFor(cfg)).run(cfg.export_name, task, ctx.signal);
      const duration_ms = Date.now() - started;
      if (typeof value === 'string') return { status: 'succeeded', output: value, duration_ms };
      if (value === undefined) return { status: 'succeeded', output: '', duration_ms };
      return { status: 'succeeded', output: JSON.stringify(value), structured_output: value, duration_ms };
    } catch (err) {
      const duration_ms = Date.now() - started;
      if (ctx.signal.aborted || isAbort(err)) {
        const reason = String(ctx.signal.reason);
        if (reason === 'timeout') return { status: 'timed_out', error: 'timed out; its worker thread was terminated', duration_ms };
        return { status: 'cancelled', error: `stopped (${reason}); its worker thread was terminated`, duration_ms };
      }
      const message = err instanceof Error ? err.message : String(err);
      // The thread's words for a missing export (piscina's, kept); no retry can fix it.
      if (message.startsWith('No handler function exported from')) {
        return { status: 'failed', kind: 'permanent', error: `worker_config.export_name: ${cfg.module} has no function export ${JSON.stringify(cfg.export_name)}`, duration_ms };
      }
      return { status: 'failed', kind: 'retryable', error: message, duration_ms, stderr_tail: err instanceof Error && err.stack ? err.stack.slice(0, 2000) : '' };
    }
  },

  async health(cfg): Promise<WorkerHealth> {
    try {
      await access(cfg.module, constants.R_OK);
    } catch {
      return { status: 'down', details: `worker_config.module: ${cfg.module} is not a readable file` };
    }
    return { status: 'ok', features: ['piscina', `threads ${cfg.max_threads ?? availableParallelism()}`], details: `${cfg.module} (export ${cfg.export_name})` };
  },

  async close() {
    const all = [...pools.values()];
    pools.clear();
    await Promise.all(all.map((p) => p.destroy().catch(() => undefined)));
  },
};
