import { describe, expect, it } from 'vitest';
import { parseJobSpec } from '../../src/domain/job-spec.js';

const base = { name: 'n', user_intent: 'i', enumerator_type: 'csv', worker_type: 'shell' };

describe('JobSpec', () => {
  it('fills defaults', () => {
    expect(parseJobSpec(base)).toMatchObject({ max_workers: 4, max_retries: 3, timeout_seconds: 600, enumerator_config: {}, worker_config: {} });
  });

  it('rejects unknown fields by name', () => {
    expect(() => parseJobSpec({ ...base, max_worker: 3 })).toThrow('unknown field: max_worker');
  });

  it('names the field and the problem for a wrong type or range', () => {
    expect(() => parseJobSpec({ ...base, max_workers: 'many' })).toThrow(/^max_workers: /);
    expect(() => parseJobSpec({ ...base, max_retries: -1 })).toThrow(/^max_retries: /);
    expect(() => parseJobSpec({ ...base, name: '' })).toThrow(/^name: /);
    expect(() => parseJobSpec({ name: 'x' })).toThrow(/user_intent: .*enumerator_type: /);
  });

  it('a job that names no worker gets claude, the default worker', () => {
    const { worker_type: _, ...noWorker } = base as Record<string, unknown>;
    expect(parseJobSpec(noWorker).worker_type).toBe('claude');
    expect(parseJobSpec({ ...base, worker_type: 'shell' }).worker_type).toBe('shell');
  });
});
