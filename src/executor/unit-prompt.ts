import type { Item } from '../contracts/enumerator.js';
import type { ClaimedUnit } from '../store/repository.js';
import type { JobRow } from '../store/schema.js';
import { feedbackSection } from './output-schema.js';
import type { PromptSynthesizer } from './prompt-synthesizer.js';

/** A unit's rendered prompt, and how much of its start every unit of the job shares. */
export interface UnitPrompt {
  prompt: string;
  shared_prefix_chars: number;
}

/**
 * The prompt one attempt of an item unit runs with: the job's template rendered
 * for its item, and, after an answer that broke the output schema, what was
 * wrong with it. The shared prefix is what a provider may cache.
 */
export function itemPrompt(synthesizer: PromptSynthesizer, job: JobRow, unit: Pick<ClaimedUnit, 'error_kind' | 'error' | 'output'>, item: Item, outputSchema: Record<string, unknown> | null): UnitPrompt {
  const rendered = synthesizer.renderParts(job.prompt_template, { intent: job.user_intent, job: { id: job.id, name: job.name }, output_schema: outputSchema }, item);
  let prompt = rendered.prompt;
  if (unit.error_kind === 'invalid_output' && unit.error) prompt += feedbackSection(unit.error, unit.output);
  return { prompt, shared_prefix_chars: rendered.shared_prefix_chars };
}
