import { describe, expect, it } from 'vitest';
import { PromptSynthesizer } from '../../src/executor/prompt-synthesizer.js';
import { httpLlmWorker, request, type HttpLlmConfig } from '../../workers/http-llm.js';

const s = new PromptSynthesizer();
const ctx = { intent: 'Label the text.', job: { id: 7, name: 'labels' }, output_schema: { type: 'object', properties: { label: { type: 'string' } } } };

describe('PromptSynthesizer.renderParts: what every unit of a job shares', () => {
  it.each(['generic', 'file'] as const)('%s: the prefix is everything job-wide, and ends where the item begins', (kind) => {
    const template = s.template(kind);
    const a = s.renderParts(template, ctx, { id: 'a', text: 'first item', file_path: '/data/a.txt' });
    const b = s.renderParts(template, ctx, { id: 'b', text: 'another, longer item', file_path: '/data/b.txt' });
    expect(a.prompt).toBe(s.render(template, ctx, { id: 'a', text: 'first item', file_path: '/data/a.txt' }));
    expect(a.shared_prefix_chars).toBeGreaterThan(0);
    const prefix = a.prompt.slice(0, a.shared_prefix_chars);
    // The same for every unit, and it holds the job's name, the intent and the output instructions …
    expect(b.prompt.slice(0, b.shared_prefix_chars)).toBe(prefix);
    expect(prefix).toContain('"labels"');
    expect(prefix).toContain('Label the text.');
    expect(prefix).toContain('## Output');
    expect(prefix).toContain('"label"');
    // … and nothing of the item: the rest starts with its data block.
    expect(prefix).not.toContain('first item');
    expect(a.prompt.slice(a.shared_prefix_chars)).toMatch(/^```json\n\{\n {2}"id": "a"/);
  });

  it('a custom template: the text before its first item placeholder, job-wide placeholders rendered', () => {
    const template = 'Job {{job.name}}: {{intent}}\n{{output_instructions}}Now the row {{item.id}} says {{item.text}}; {{intent}} again.';
    const parts = s.renderParts(template, { intent: 'Sort {{item.id}}', job: { id: 1, name: 'j' } }, { id: 'r1', text: 'hello' });
    expect(parts.prompt).toBe('Job j: Sort {{item.id}}\nNow the row r1 says hello; Sort {{item.id}} again.');
    // The intent's own braces are text, not a placeholder: the prefix runs to the template's {{item.id}}.
    expect(parts.prompt.slice(0, parts.shared_prefix_chars)).toBe('Job j: Sort {{item.id}}\nNow the row ');
  });

  it('spaces inside the braces still mark the item', () => {
    const parts = s.renderParts('Intro {{ intent }} then {{ item.x }}', { intent: 'i', job: { id: 1, name: 'j' } }, { x: 'X' });
    expect(parts).toEqual({ prompt: 'Intro i then X', shared_prefix_chars: 'Intro i then '.length });
  });

  it('a template that starts with the item shares nothing', () => {
    expect(s.renderParts('{{item_data}}\n{{intent}}', ctx, { id: 'a' }).shared_prefix_chars).toBe(0);
    expect(s.renderParts('{{item.id}}: {{intent}}', ctx, { id: 'a' }).shared_prefix_chars).toBe(0);
  });

  it('a template without the item: every unit has the same prompt, all of it shared', () => {
    const parts = s.renderParts('Say {{intent}} for {{job.name}}.', ctx, { id: 'a' });
    expect(parts).toEqual({ prompt: 'Say Label the text. for labels.', shared_prefix_chars: parts.prompt.length });
  });
});

describe('http-llm request: the shared prefix is marked for the Anthropic prompt cache', () => {
  const cfg = (raw: Record<string, unknown>): HttpLlmConfig => httpLlmWorker.configSchema.parse({ model: 'claude-sonnet-4-5', ...raw });
  const prompt = 'SHARED PART\nITEM PART';
  const shared = 'SHARED PART\n'.length;

  it('anthropic: the prefix is a block of its own with cache_control, the item the next block; the system prompt is marked too', () => {
    const { body } = request(cfg({ api: 'anthropic', system: 'Be brief.' }), { prompt, shared_prefix_chars: shared });
    expect(body.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'SHARED PART\n', cache_control: { type: 'ephemeral' } },
          { type: 'text', text: 'ITEM PART' },
        ],
      },
    ]);
    expect(body.system).toEqual([{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }]);
  });

  it('anthropic: nothing shared is the bare prompt; all of it shared is one marked block (no empty block)', () => {
    expect(request(cfg({ api: 'anthropic' }), { prompt, shared_prefix_chars: 0 }).body.messages).toEqual([{ role: 'user', content: prompt }]);
    expect(request(cfg({ api: 'anthropic' }), { prompt }).body.messages).toEqual([{ role: 'user', content: prompt }]);
    expect(request(cfg({ api: 'anthropic' }), { prompt, shared_prefix_chars: prompt.length }).body.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: prompt, cache_control: { type: 'ephemeral' } }] },
    ]);
    expect(request(cfg({ api: 'anthropic' }), { prompt }).body.system).toBeUndefined();
  });

  it('openai: caches prefixes by itself, so nothing is marked', () => {
    const { body } = request(cfg({ api: 'openai', model: 'gpt-4o-mini', system: 'Be brief.' }), { prompt, shared_prefix_chars: shared });
    expect(body.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: prompt },
    ]);
  });
});
