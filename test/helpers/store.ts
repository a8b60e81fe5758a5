import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openRepository } from '../../src/store/database.js';
import type { Repository, UnitDraft } from '../../src/store/repository.js';
import type { JobRow } from '../../src/store/schema.js';
import { createTestDatabase, dropTestDatabase, queryPostgres, TEST_BACKEND } from './postgres.js';

/**
 * A fresh database for in-process store tests, on this run's backend (see
 * TEST_BACKEND): a SQLite file in a temp directory, or a fresh PostgreSQL database.
 * `open()` gives another Repository on the same database (another "executor").
 */
export interface TestStore {
  url: string;
  repo: Repository;
  open(options?: { pgPoolSize?: number }): Promise<Repository>;
  cleanup(): Promise<void>;
}

export async function createTestStore(backend: 'sqlite' | 'postgres' = TEST_BACKEND): Promise<TestStore> {
  const dir = mkdtempSync(join(tmpdir(), 'abp-store-'));
  const url = backend === 'postgres' ? await createTestDatabase() : join(dir, 'abp.db');
  const opened: Repository[] = [];
  const open = async (options: { pgPoolSize?: number } = {}) => {
    const repo = await openRepository({ db: url, busyTimeoutMs: 30_000, log: () => undefined, ...options });
    opened.push(repo);
    return repo;
  };
  const repo = await open();
  return {
    url,
    repo,
    open,
    async cleanup() {
      await Promise.all(opened.map((r) => r.close().catch(() => undefined)));
      if (backend === 'postgres') await dropTestDatabase(url).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function* drafts(n: number): AsyncGenerator<UnitDraft> {
  for (let i = 0; i < n; i++) yield { item_id: `item-${i}`, payload: JSON.stringify({ n: i }) };
}

/** A shell job of `units` units, created and moved straight to RUNNING (no test unit). */
export async function runningJob(repo: Repository, units: number, maxWorkers: number, maxRetries = 3): Promise<JobRow> {
  const job = await repo.createJob(
    {
      name: 'store test',
      user_intent: 'test',
      enumerator_type: 'json',
      enumerator_config: '{}',
      worker_type: 'shell',
      worker_config: '{"command":"true"}',
      max_workers: maxWorkers,
      max_retries: maxRetries,
      timeout_seconds: 60,
      output_schema: null,
      max_cost_usd: null,
      post_processing_prompt: null,
      prompt_template: '{{item.n}}',
      test_unit_id: null,
    },
    drafts(units),
  );
  return repo.moveJob(job.id, 'skip_test');
}

/** One read-only query straight against a test database (either backend), `?` placeholders. */
export async function queryDb<T = Record<string, any>>(url: string, text: string, ...params: unknown[]): Promise<T[]> {
  if (/^postgres(ql)?:\/\//.test(url)) return queryPostgres<T>(url, text, params);
  const db = new Database(url, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(text).all(...params) as T[];
  } finally {
    db.close();
  }
}
