import type { Registry } from '../contracts/registry.js';
import type { Worker, WorkerHealth } from '../contracts/worker.js';
import { AbpError, errorMessage } from '../domain/errors.js';
import { parseWith } from '../domain/job-spec.js';
import type { JobRow } from '../store/schema.js';
import type { OrchestratorDeps } from './orchestrator.js';

/**
 * Checks the job's worker before it runs: auth_failed and down refuse with the
 * worker's own advice (how to log in, which env var to set). The result is an
 * event on the job; a warning (e.g. permission checks turned off) is returned
 * so that it becomes the job's status_reason.
 */
export async function checkWorker(deps: Pick<OrchestratorDeps, 'repo' | 'workers'>, job: JobRow): Promise<string | null> {
  const worker = deps.workers.get(job.worker_type);
  const config = parseWith(worker.configSchema, JSON.parse(job.worker_config), 'worker_config');
  const health = await worker.health(config);
  await deps.repo.appendEvent(job.id, 'health', { worker_type: job.worker_type, ...health });
  if (health.status === 'auth_failed' || health.status === 'down') {
    const what = health.status === 'auth_failed' ? 'is not authenticated' : 'is unavailable';
    throw new AbpError('conflict', `job ${job.id} not started: the ${job.worker_type} worker ${what} (${health.status}): ${health.details}`, {
      details: { job_id: job.id, worker_type: job.worker_type, health },
    });
  }
  return health.warnings?.length ? `warning: ${health.warnings.join('; ')}` : null;
}

/** Every worker type's health, for `abp doctor` and the MCP server. */
export async function doctor(workers: Registry<Worker<any>>): Promise<{ worker_type: string; label: string; health: WorkerHealth }[]> {
  type Check = { worker_type: string; label: string; health: WorkerHealth };
  const checks = workers.list().flatMap((worker): Promise<Check>[] => {
    const probes = worker.healthProbes ?? [{ label: worker.type, config: {} }];
    if (probes.length === 0) {
      return [Promise.resolve({ worker_type: worker.type, label: worker.type, health: { status: 'ok' as const, details: "nothing to check without a job: each job's worker_config is checked when it starts" } })];
    }
    return probes.map(async (probe) => {
      try {
        const config = parseWith(worker.configSchema, probe.config, 'worker_config');
        return { worker_type: worker.type, label: probe.label, health: await worker.health(config) };
      } catch (err) {
        return { worker_type: worker.type, label: probe.label, health: { status: 'down' as const, details: `health check failed: ${errorMessage(err)}` } };
      }
    });
  });
  return Promise.all(checks);
}
