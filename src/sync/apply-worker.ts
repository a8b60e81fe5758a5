import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { Provider, ProviderItem, ProviderRecord, WriteOutcome } from '../contracts/provider.js';
import type { Registry } from '../contracts/registry.js';
import type { RunContext, UnitInput, UnitOutcome, Worker, WorkerHealth } from '../contracts/worker.js';
import { errorMessage } from '../domain/errors.js';
import { parseWith } from '../domain/job-spec.js';
import { SyncPair } from '../domain/sync-pair.js';
import { fence, render } from '../domain/template.js';
import type { ApplyReport } from './apply-report.js';
import { ChunkPayload } from './chunks.js';
import { otherSide } from './pair-state.js';
import { openProvider } from './providers/index.js';

const config = z.strictObject({
  pair_id: z.string().min(1),
  pair: SyncPair,
});
type SyncApplyConfig = z.infer<typeof config>;

const DEFAULT_PROMPT = '{{intent}}\n\nAnswer with the new content only, nothing else.\n\n{{item_data}}';

/** Failures about the transform worker as a whole: the pool pauses or cools the job down instead. */
const WHOLE_UNIT: readonly string[] = ['rate_limited', 'auth_failed', 'quota_exhausted'];

const RANK: Record<WorkerHealth['status'], number> = { ok: 0, degraded: 1, down: 2, auth_failed: 3 };

/** Health statuses of a provider that is answering writes. */
const ANSWERS: readonly WorkerHealth['status'][] = ['ok', 'degraded'];

type Prepared = { items: ProviderItem[]; stop?: undefined } | { stop: UnitOutcome };

/**
 * Applies one chunk of a sync plan: reads the items from the side they come
 * from, optionally passes each through a transform worker (the agentic part),
 * and writes them. Every key's outcome goes into the output. A chunk that
 * applied nothing fails the attempt, so the executor retries it (writes are
 * idempotent): with kind `unresolved` when the destination answered and refused
 * its items, otherwise `retryable`. One that applied some writes succeeds with
 * the rest unresolved.
 */
export function createSyncApplyWorker(registry: () => Registry<Worker<any>>): Worker<SyncApplyConfig> {
  return {
    type: 'sync-apply',
    description: "Applies one chunk of a sync job's plan to a provider (sync jobs use it; not for batch jobs).",
    configSchema: config,
    healthProbes: [],

    async run(unit, cfg, ctx): Promise<UnitOutcome> {
      const started = Date.now();
      const chunk = parseWith(ChunkPayload, unit.item, 'payload');
      const pause = cfg.pair.options.chunk_pause_ms;
      if (chunk.chunk > 0 && pause > 0) {
        // The pause comes before the chunk, so a cancel during it leaves the chunk unapplied.
        try {
          await sleep(pause, undefined, { signal: ctx.signal });
        } catch {
          return { status: 'cancelled', error: `stopped (${String(ctx.signal.reason)}) before the chunk was applied` };
        }
      }
      const to = openProvider(cfg.pair[chunk.side]);
      const from = openProvider(cfg.pair[otherSide(chunk.side)]);
      try {
        const health = await to.health();
        if (health.status === 'auth_failed') return { status: 'failed', kind: 'auth_failed', error: `the ${chunk.side} refused the credentials: ${health.details}` };
        const report: ApplyReport = { side: chunk.side, op: chunk.op, outcomes: [], transform_calls: 0 };
        /** The outcomes of the destination's own write: what it answered for the keys it was given. */
        let written: WriteOutcome[] = [];
        if (health.status === 'down') {
          report.outcomes = chunk.keys.map((key) => ({ key, status: 'unresolved', reason: `the ${chunk.side} is down: ${health.details}` }));
        } else if (chunk.op === 'remove') {
          written = await to.remove(chunk.keys);
          report.outcomes = written;
        } else {
          const prepared = await readAndTransform(registry, unit, cfg, ctx, chunk.keys, from, report);
          if (prepared.stop) return prepared.stop;
          written = chunk.op === 'add' ? await to.add(prepared.items) : await to.update(prepared.items);
          report.outcomes.push(...written);
        }
        // Refused, not broken: the destination answered with refusals and still answers now (a provider
        // that lost its connection mid-write marks every key unresolved too, and is down when asked).
        const refused =
          !report.outcomes.some((o) => o.status === 'confirmed') &&
          written.some((o) => o.status === 'unresolved') &&
          ANSWERS.includes((await to.health()).status);
        return outcomeOf(report, Date.now() - started, refused);
      } finally {
        await Promise.all([to.close(), from.close()]);
      }
    },

    async health(cfg): Promise<WorkerHealth> {
      const all: { what: string; status: WorkerHealth['status']; details: string }[] = [];
      for (const side of ['source', 'target'] as const) {
        const provider = openProvider(cfg.pair[side]);
        try {
          all.push({ what: side, ...(await provider.health()) });
        } finally {
          await provider.close();
        }
      }
      const transform = cfg.pair.transform;
      if (transform) {
        const worker = registry().get(transform.worker_type);
        const h = await worker.health(parseWith(worker.configSchema, transform.worker_config, 'sync.transform.worker_config'));
        all.push({ what: `transform (${transform.worker_type})`, status: h.status, details: h.details });
      }
      const worst = all.reduce((a, b) => (RANK[b.status] > RANK[a.status] ? b : a));
      return { status: worst.status, details: all.map((a) => `${a.what}: ${a.status} (${a.details})`).join('; ') };
    },
  };
}

/**
 * Reads the chunk's items from the side they come from and, with a transform,
 * runs each through the transform worker: its output is what gets written.
 */
async function readAndTransform(
  registry: () => Registry<Worker<any>>,
  unit: UnitInput,
  cfg: SyncApplyConfig,
  ctx: RunContext,
  keys: string[],
  from: Provider,
  report: ApplyReport,
): Promise<Prepared> {
  const records = await from.read(keys);
  const transform = cfg.pair.transform;
  const worker = transform ? registry().get(transform.worker_type) : undefined;
  const workerConfig = transform && worker ? parseWith(worker.configSchema, transform.worker_config, 'sync.transform.worker_config') : undefined;
  const items: ProviderItem[] = [];
  for (const key of keys) {
    const record = records.get(key);
    if (!record) {
      report.outcomes.push({ key, status: 'skipped', reason: 'gone from the other side since the plan' });
      continue;
    }
    if (!transform || !worker) {
      items.push({ key, data: record });
      continue;
    }
    const item = { ...record, key, _id: key };
    // The job's prompt template is {{intent}}, so the unit's prompt is the intent itself.
    const prompt = render(transform.prompt ?? DEFAULT_PROMPT, {
      intent: unit.prompt,
      job: { id: unit.job_id, name: unit.job_name },
      item,
      item_json: JSON.stringify(item),
      item_data: fence(JSON.stringify(item, null, 2), 'json'),
    });
    report.transform_calls++;
    let outcome: UnitOutcome;
    try {
      outcome = await worker.run({ ...unit, item, prompt, output_schema: null }, workerConfig, ctx);
    } catch (err) {
      outcome = { status: 'failed', kind: 'retryable', error: `transform worker error: ${errorMessage(err)}` };
    }
    if (outcome.status === 'cancelled') return { stop: outcome };
    if (outcome.status === 'failed' && WHOLE_UNIT.includes(outcome.kind)) return { stop: outcome };
    if (outcome.status !== 'succeeded') {
      report.outcomes.push({ key, status: 'unresolved', reason: `transform ${outcome.status}: ${outcome.error}` });
      continue;
    }
    const data = transformed(record, outcome.output, cfg.pair.target.type === 'dir');
    if (typeof data === 'string') report.outcomes.push({ key, status: 'unresolved', reason: data });
    else items.push({ key, data });
  }
  return { items };
}

/** A dir item takes the output as its new text; a record takes the output's JSON object over its own fields. */
function transformed(record: ProviderRecord, output: string, isDir: boolean): ProviderRecord | string {
  if (isDir) return { ...record, content: output, encoding: 'utf8' };
  try {
    const value = JSON.parse(output) as unknown;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'the transform output is not a JSON object';
    return { ...record, ...(value as ProviderRecord) };
  } catch (err) {
    return `the transform output is not JSON: ${errorMessage(err)}`;
  }
}

/**
 * A chunk that applied at least one write succeeds, and its unresolved keys stay in its report:
 * the run ends COMPLETED with `unresolved N`, and the next run plans them again (quarantined after
 * repeated failures). A chunk that applied nothing fails, so the executor retries it; its report
 * stays its output, so its keys count as unresolved too. When the destination answered and
 * refused every key it was given (`refused`), the failure's kind is `unresolved`: the job still
 * ends COMPLETED if another chunk succeeded (domain/job-rules.ts endOfWork). When the provider was
 * down or broke, or nothing reached it (every transform failed), the kind is `retryable`, and a
 * run that cannot apply the chunk ends FAILED.
 */
function outcomeOf(report: ApplyReport, duration_ms: number, refused: boolean): UnitOutcome {
  const output = JSON.stringify(report);
  const unresolved = report.outcomes.filter((o) => o.status === 'unresolved') as { key: string; reason: string }[];
  const applied = report.outcomes.some((o) => o.status === 'confirmed');
  if (unresolved.length === 0 || applied) return { status: 'succeeded', output, structured_output: report, duration_ms };
  const first = unresolved[0];
  return {
    status: 'failed',
    kind: refused ? 'unresolved' : 'retryable',
    error: `${unresolved.length} of ${report.outcomes.length} ${report.op} writes to the ${report.side} unresolved; first: ${first?.key}: ${first?.reason}`,
    output,
    duration_ms,
  };
}
