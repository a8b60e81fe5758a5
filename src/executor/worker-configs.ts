import type { Worker } from '../contracts/worker.js';
import { parseWith } from '../domain/job-spec.js';
import type { JobRow } from '../store/schema.js';

/**
 * Each job's worker_config, parsed through its worker's schema once per text of
 * it, for the pool and the batch runner alike. Keyed by the job and checked
 * against the config's text, not the job's updated_at: every claim and outcome
 * moves updated_at, which made the parse run again for nearly every unit.
 * Bounded: an executor that has run many jobs keeps only the recent ones.
 */
export class WorkerConfigs {
  private readonly parsed = new Map<number, { text: string; config: unknown }>();

  of(worker: Worker<any>, job: Pick<JobRow, 'id' | 'worker_config'>): unknown {
    const known = this.parsed.get(job.id);
    if (known?.text === job.worker_config) return known.config;
    if (this.parsed.size >= 100) this.parsed.clear();
    const config = parseWith(worker.configSchema, JSON.parse(job.worker_config), 'worker_config');
    this.parsed.set(job.id, { text: job.worker_config, config });
    return config;
  }
}
