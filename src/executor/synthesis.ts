import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import type { Repository } from '../store/repository.js';
import { parseJson } from '../wire/views.js';
import type { JobRow } from '../store/schema.js';

export interface Gathered {
  manifest_path: string;
  summary: string;
  units: number;
}


/**
 * The gather step of scatter-gather-synthesize: writes every item unit's item,
 * output, status and cost to a JSONL manifest (streamed, so a large job never
 * sits in memory) and sums them up for the synthesis prompt.
 */
export async function writeManifest(repo: Repository, job: JobRow, dir: string): Promise<Gathered> {
  const manifest_path = join(dir, 'synthesis-manifest.jsonl');
  const out = createWriteStream(manifest_path);
  const counts: Record<string, number> = {};
  let cost = 0;
  let units = 0;
  for await (const unit of repo.iterateUnits(job.id)) {
    if (unit.kind !== 'item') continue;
    units++;
    counts[unit.status] = (counts[unit.status] ?? 0) + 1;
    cost += unit.cost_usd ?? 0;
    const line = JSON.stringify({
      unit_id: unit.id,
      item_id: unit.item_id,
      status: unit.status,
      item: parseJson(unit.payload),
      output: unit.output,
      structured_output: parseJson(unit.structured_output),
      error: unit.error,
      cost_usd: unit.cost_usd,
    });
    if (!out.write(`${line}\n`)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  out.end();
  await finished(out);
  const byStatus = Object.entries(counts)
    .map(([status, n]) => `${n} ${status}`)
    .join(', ');
  const summary = `${units} units (${byStatus}); total cost $${cost.toFixed(4)}. The manifest has one JSON line per unit: unit_id, item_id, status, item, output, structured_output, error, cost_usd.`;
  return { manifest_path, summary, units };
}
