import { dirname } from 'node:path';
import type { UnitInput } from '../src/contracts/worker.js';
import { render } from '../src/domain/template.js';

/** The placeholder values every subprocess worker offers: {{item.FIELD}}, {{item_json}}, {{prompt}}, {{unit.id}}, {{job.id}}. */
export function unitValues(unit: UnitInput) {
  return {
    item: unit.item,
    item_json: JSON.stringify(unit.item),
    prompt: unit.prompt,
    unit: { id: unit.unit_id, attempt: unit.attempt },
    job: { id: unit.job_id, name: unit.job_name },
  };
}

export const fillFor = (unit: UnitInput) => (template: string) => render(template, unitValues(unit));

/**
 * Where an agent works on a unit: the configured cwd, else the item's own folder
 * for file items (so relative paths in the item make sense), else the job's work dir.
 */
export function agentCwd(unit: UnitInput, configured: string | undefined): string {
  if (configured !== undefined) return fillFor(unit)(configured);
  const file = unit.item.file_path;
  return typeof file === 'string' && file ? dirname(file) : unit.work_dir;
}
