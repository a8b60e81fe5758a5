import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AbpError } from '../domain/errors.js';
import { fence, placeholdersOf, render, renderWithPrefix, usesRoot, type TemplateValues } from '../domain/template.js';
import type { Item } from '../contracts/enumerator.js';

import { PACKAGE_ROOT } from '../package-root.js';

const ROOTS = ['intent', 'job', 'item', 'item_data', 'output_instructions'];

/** The placeholders whose value differs from unit to unit: the item's ({{item_data}}, {{item}}, {{item.…}}). */
const dependsOnItem = (path: readonly string[]) => path[0] === 'item' || (path.length === 1 && path[0] === 'item_data');

export interface PromptContext {
  intent: string;
  job: { id: number; name: string };
  output_schema?: Record<string, unknown> | null;
}

/**
 * Builds a job's prompt template from its intent and enumerator, and renders it
 * once per unit. The template keeps its placeholders until render time, and
 * rendering is a single pass, so nothing inside the intent or the item is ever
 * read as a placeholder.
 */
export class PromptSynthesizer {
  private readonly cache = new Map<string, string>();

  template(kind: 'file' | 'generic' | 'synthesis'): string {
    let text = this.cache.get(kind);
    if (text === undefined) {
      text = readFileSync(join(PACKAGE_ROOT, 'prompts', `${kind}.md`), 'utf8');
      this.cache.set(kind, text);
    }
    return text;
  }

  /** Rejects a template that names a placeholder no unit can fill. */
  validate(template: string): void {
    const unknown = placeholdersOf(template).filter((p) => !ROOTS.includes(p.split('.')[0] as string));
    if (unknown.length > 0) {
      throw new AbpError(
        'invalid_input',
        `prompt_template: unknown placeholder ${unknown.map((p) => `{{${p}}}`).join(', ')}; use {{intent}}, {{job.name}}, {{item.FIELD}}, {{item_data}} or {{output_instructions}}`,
      );
    }
  }

  /** The synthesis unit's prompt: the job's intent, its post-processing instructions and the gathered outputs. */
  renderSynthesis(
    job: { id: number; name: string; user_intent: string; post_processing_prompt: string | null },
    gathered: { manifest_path: string; summary: string },
  ): string {
    return render(this.template('synthesis'), {
      job: { id: job.id, name: job.name },
      intent: job.user_intent,
      instructions: job.post_processing_prompt ?? '',
      summary: gathered.summary,
      manifest_path: gathered.manifest_path,
    });
  }

  /**
   * The rendered prompt, and how many of its first characters are the same for
   * every unit of the job: the template's text up to its first placeholder that
   * depends on the item, rendered.
   */
  renderParts(template: string, ctx: PromptContext, item: Item): { prompt: string; shared_prefix_chars: number } {
    // The head holds only job-wide placeholders (intent, job, output_instructions), rendered in
    // the same single pass as the rest: no item placeholder, and every unit's prompt is the same text.
    const { text, prefix_chars } = renderWithPrefix(template, this.values(template, ctx, item), dependsOnItem);
    return { prompt: text, shared_prefix_chars: prefix_chars };
  }

  render(template: string, ctx: PromptContext, item: Item): string {
    return render(template, this.values(template, ctx, item));
  }

  /** The values a template names; the costly ones (the item as a JSON block, the output instructions) only if it names them. */
  private values(template: string, ctx: PromptContext, item: Item): TemplateValues {
    const values: TemplateValues = { intent: ctx.intent, job: ctx.job, item };
    if (usesRoot(template, 'item_data')) values.item_data = fence(JSON.stringify(item, null, 2), 'json');
    if (usesRoot(template, 'output_instructions')) values.output_instructions = outputInstructions(ctx.output_schema);
    return values;
  }
}

function outputInstructions(schema: Record<string, unknown> | null | undefined): string {
  if (!schema) return '';
  return [
    '',
    '## Output',
    '',
    'Answer with one JSON value that follows this JSON Schema, and nothing else:',
    '',
    fence(JSON.stringify(schema, null, 2), 'json'),
    '',
  ].join('\n');
}
