import type { Worker } from '../contracts/worker.js';
import { parseWith } from '../domain/job-spec.js';
import type { JobRow } from '../store/schema.js';

/**
 * Each job's worker_config, parsed through its worker's schema once per version
 * of the job (its updated_at), for the pool and the batch runner alike. Bounded:
 * an executor that has run many jobs keeps only the recent ones.
 */
export class WorkerConfigs {
  private readonly parsed = new Map<string, unknown>();

  of(worker: Worker<any>, job: Pick<JobRow, 'id' | 'updated_at' | 'worker_config'>): unknown {
    const key = `${job.id}:${job.updated_at}`;
    if (!this.parsed.has(key)) {
      if (this.parsed.size >= 100) this.parsed.clear();
      this.parsed.set(key, parseWith(worker.configSchema, JSON.parse(job.worker_config), 'worker_config'));
    }
    return this.parsed.get(key);
  }
}
