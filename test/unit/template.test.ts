import { describe, expect, it } from 'vitest';
import { fence, placeholdersOf, render } from '../../src/domain/template.js';
import { PromptSynthesizer } from '../../src/executor/prompt-synthesizer.js';

describe('render: one pass, values inserted literally', () => {
  it('fills dotted paths and leaves placeholders inside values alone', () => {
    const out = render('A {{intent}} B {{item.x}} C {{ item.n }} D {{item.missing}} E', {
      intent: 'do {{item.x}} now',
      item: { x: '{{intent}}', n: 3 },
    });
    expect(out).toBe('A do {{item.x}} now B {{intent}} C 3 D  E');
  });

  it('renders objects as JSON and never reads inherited properties', () => {
    expect(render('{{item.o}}|{{item.constructor}}|{{item.__proto__}}', { item: { o: { a: [1] } } })).toBe('{"a":[1]}||');
  });

  it('lists the placeholders of a template', () => {
    expect(placeholdersOf('{{a}} {{ b.c }} {x} {{}}')).toEqual(['a', 'b.c']);
  });
});

describe('fence', () => {
  it('is longer than any run of backticks inside, so data cannot close it', () => {
    const data = 'x ``` y ````` z';
    const block = fence(data, 'json');
    expect(block.startsWith('``````json\n')).toBe(true);
    expect(block.endsWith('\n``````')).toBe(true);
    expect(fence('plain')).toBe('```\nplain\n```');
  });
});

describe('PromptSynthesizer', () => {
  const s = new PromptSynthesizer();

  it('ships a file template and a generic one, both with the data block', () => {
    for (const kind of ['file', 'generic'] as const) {
      const t = s.template(kind);
      expect(t).toContain('{{intent}}');
      expect(t).toContain('{{item_data}}');
      s.validate(t);
    }
  });

  it('puts the item in a fenced data block and the intent verbatim', () => {
    const out = s.render(s.template('generic'), { intent: 'Summarise {{item.a}}', job: { id: 1, name: 'j' } }, { a: 'A', b: '```' });
    expect(out).toContain('Summarise {{item.a}}');
    expect(out).toContain('````json\n{\n  "a": "A",\n  "b": "```"\n}\n````');
  });

  it('asks for the output schema when the job has one', () => {
    const out = s.render(s.template('generic'), { intent: 'x', job: { id: 1, name: 'j' }, output_schema: { type: 'object' } }, {});
    expect(out).toContain('JSON Schema');
    expect(out).toContain('"type": "object"');
  });

  it('rejects a template with a placeholder no unit can fill, naming it', () => {
    expect(() => s.validate('{{intent}} {{itme.x}}')).toThrow(/unknown placeholder \{\{itme\.x\}\}/);
  });
});
