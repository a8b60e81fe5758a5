import type { JobStatus } from '../wire/views.js';

export function statusLine(s: JobStatus): string {
  const c = s.counts;
  const reason = s.status_reason ? ` (${s.status_reason})` : '';
  const cost = s.cost_usd ? ` $${s.cost_usd.toFixed(4)}` : '';
  const approved = s.approved_by ? `, approved by ${s.approved_by}` : '';
  return `job ${s.job_id} ${JSON.stringify(s.name)}: ${s.status}${reason}${approved} | ${c.succeeded}/${s.total} succeeded, ${c.failed} failed, ${c.running} running, ${c.submitted ? `${c.submitted} in provider batches, ` : ''}${c.pending} pending, ${c.cancelled} cancelled${cost}`;
}

/** An open provider batch, as status shows it (wire/views.ts batchesView). */
interface BatchLine {
  batch_id: number;
  provider: string;
  provider_id: string | null;
  state: string;
  requests: number;
  counts: unknown;
  cancel_requested: boolean;
}

export function statusBlock(s: JobStatus & { executors?: { warning: string | null } | null; batches?: { open: BatchLine[]; ended: number } | null }): string {
  return [
    statusLine(s),
    `  enumerator ${s.enumerator_type}, worker ${s.worker_type}, max_workers ${s.max_workers}, max_retries ${s.max_retries}, timeout ${s.timeout_seconds}s`,
    ...(s.agent_access ? [`  agent access: ${s.agent_access}`] : []),
    `  created ${s.created_at}${s.started_at ? `, started ${s.started_at}` : ''}${s.finished_at ? `, finished ${s.finished_at}` : ''}`,
    ...(s.rate_per_second ? [`  rate ${s.rate_per_second}/s${s.eta_seconds !== null ? `, ETA ${formatSeconds(s.eta_seconds)}` : ''}`] : []),
    ...(s.estimate
      ? [
          `  projected (${s.estimate.basis === 'test_unit' ? 'from the test unit' : 'from the observed rate'}): ${formatSeconds(s.estimate.projected_seconds)} to go${s.estimate.projected_cost_usd !== null ? `, $${s.estimate.projected_cost_usd.toFixed(4)} in all` : ''}`,
        ]
      : []),
    ...(s.estimate_note ? [`  ${s.estimate_note}`] : []),
    ...(s.executors?.warning ? [`  warning: ${s.executors.warning}`] : []),
    ...(s.batches?.open ?? []).map(
      (b) =>
        `  batch ${b.batch_id} (${b.provider}${b.provider_id ? ` ${b.provider_id}` : ''}): ${b.state}${b.cancel_requested ? ', cancel requested' : ''}, ${b.requests} requests${b.counts ? ` ${JSON.stringify(b.counts)}` : ''}`,
    ),
    ...(s.batches?.ended ? [`  ${s.batches.ended} provider batch${s.batches.ended === 1 ? '' : 'es'} ended`] : []),
    ...(s.budget ? [`  budget $${s.budget.max_cost_usd}: spent $${s.budget.spent_usd.toFixed(4)}, reserved $${s.budget.reserved_usd.toFixed(4)}`] : []),
  ].join('\n');
}

export function formatSeconds(total: number): string {
  const s = Math.max(0, Math.round(total));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A small table for people; --json is the format for programs. */
export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cells = rows.map((r) => columns.map((c) => clip(r[c] === null || r[c] === undefined ? '' : String(r[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] as string).length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(columns), ...cells.map(line)].join('\n');
}

function clip(text: string, max = 60): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
