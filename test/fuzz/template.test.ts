import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fence, render } from '../../src/domain/template.js';
import { PromptSynthesizer } from '../../src/executor/prompt-synthesizer.js';
import { fuzz, nastyText } from './support.js';

/**
 * The renderer against a model of itself: a template is literal text and
 * placeholders, and the output is that text with each placeholder replaced by its
 * value, verbatim. Whatever the values hold (placeholders, fences, `$&`), nothing
 * else may change. The data block is then read back the way a Markdown reader
 * would, to check that no item can end it early or late.
 */

const PLACEHOLDER = /\{\{\s*([A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*\}\}/g;

/** What a value looks like once inserted: the renderer's documented rules. */
function shown(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

function valueAt(values: Record<string, unknown>, path: string): unknown {
  let node: unknown = values;
  for (const part of path.split('.')) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** The expected output, and where each placeholder's value landed in it. */
function expectedRender(template: string, values: Record<string, unknown>): { text: string; spans: { path: string; start: number; end: number }[] } {
  let text = '';
  let last = 0;
  const spans: { path: string; start: number; end: number }[] = [];
  for (const m of template.matchAll(PLACEHOLDER)) {
    text += template.slice(last, m.index);
    const value = shown(valueAt(values, m[1] as string));
    spans.push({ path: m[1] as string, start: text.length, end: text.length + value.length });
    text += value;
    last = m.index + m[0].length;
  }
  return { text: text + template.slice(last), spans };
}

function longestBacktickRun(text: string): number {
  let longest = 0;
  let run = 0;
  for (const ch of text) {
    run = ch === '`' ? run + 1 : 0;
    if (run > longest) longest = run;
  }
  return longest;
}

/**
 * Reads one backtick-fenced block that opens at `start`, by the CommonMark rules
 * (a closing line is 0-3 spaces, at least as many backticks as the opening, then
 * only spaces or tabs; \n, \r\n and \r all end a line). Returns its info string,
 * content and the offset just past its closing line, or null if it never closes.
 */
function readFence(text: string, start: number): { info: string; content: string; end: number } | null {
  const lineEnd = (from: number) => {
    const m = /\r\n|\r|\n/.exec(text.slice(from));
    return m ? { at: from + m.index, next: from + m.index + m[0].length } : { at: text.length, next: text.length };
  };
  const first = lineEnd(start);
  const open = /^ {0,3}(`{3,})([^`]*)$/.exec(text.slice(start, first.at));
  if (!open) return null;
  const width = (open[1] as string).length;
  for (let pos = first.next, prev = first.at; pos <= text.length; ) {
    const line = lineEnd(pos);
    const close = /^ {0,3}(`+)[ \t]*$/.exec(text.slice(pos, line.at));
    if (close && (close[1] as string).length >= width) {
      return { info: open[2] as string, content: text.slice(first.next, Math.max(first.next, prev)), end: line.at };
    }
    if (line.next === pos) break;
    prev = line.at;
    pos = line.next;
  }
  return null;
}

/** Items as the executor sees them: whatever the enumerator gave, after a JSON round trip through the store. */
const fieldName = fc.oneof(fc.constantFrom('x', 'file_path', 'relative_path', 'file_size', '_id', '__proto__', 'constructor'), nastyText(4));
const fieldValue = fc.oneof(
  { weight: 4, arbitrary: nastyText() },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);
const item = fc.dictionary(fieldName, fieldValue, { maxKeys: 6 }).map((o) => JSON.parse(JSON.stringify(o)) as Record<string, unknown>);

describe('render: one pass, whatever the values hold', () => {
  const paths = ['intent', 'job.name', 'item.x', 'item.y', 'item.missing', 'secret'];
  const template = fc
    .array(
      fc.oneof(
        // The template is the trusted part; its literal text has no braces of its own.
        fc.string({ unit: 'grapheme', maxLength: 8 }).map((s) => s.replace(/[{}]/g, '')),
        fc.record({ path: fc.constantFrom(...paths), pad: fc.constantFrom('', ' ', '  ') }).map(({ path, pad }) => `{{${pad}${path}${pad}}}`),
      ),
      { maxLength: 10 },
    )
    .map((parts) => parts.join(''));

  it('inserts every value verbatim and expands nothing inside a value', () => {
    fc.assert(
      fc.property(template, nastyText(), nastyText(), nastyText(), fieldValue, (t, intent, name, x, y) => {
        const values = { intent, job: { name }, item: { x, y } };
        expect(render(t, values)).toBe(expectedRender(t, values).text);
      }),
      fuzz(500),
    );
  });

  it('a placeholder smuggled into a value never reaches a value the template did not ask for', () => {
    const secret = 'SECRET-7c1f';
    const smuggled = fc.array(fc.oneof(nastyText(4), fc.constantFrom('{{secret}}', '{{ secret }}', '{{item.secret}}', '{{job.secret}}')), { maxLength: 6 });
    fc.assert(
      fc.property(smuggled, smuggled, (a, b) => {
        const values = { intent: a.join(''), job: { name: b.join(''), secret }, item: { x: b.join('{{'), secret }, secret };
        const out = render('{{intent}}|{{job.name}}|{{item.x}}', values);
        expect(out).not.toContain(secret);
        expect(out).toBe(`${values.intent}|${values.job.name}|${values.item.x}`);
      }),
      fuzz(500),
    );
  });
});

describe('fence: no content can close it early', () => {
  const content = fc.oneof(nastyText(20), fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v, null, 2)));

  it('reads back, by the Markdown rules, as one block holding exactly the content', () => {
    fc.assert(
      fc.property(content, fc.constantFrom('', 'json', 'text'), (c, info) => {
        const block = fence(c, info);
        const read = readFence(block, 0);
        expect(read).not.toBeNull();
        expect(read!.info).toBe(info);
        // A trailing \r and the fence's own line break read as one line end, which Markdown drops either way.
        expect(read!.content).toBe(c.replace(/\r$/, ''));
        expect(read!.end).toBe(block.length);
        expect(block.indexOf('`'.repeat(Math.max(3, longestBacktickRun(c) + 1)))).toBe(0);
      }),
      fuzz(500),
    );
  });

  it('copes with content of up to 1 MiB made of many backtick runs (an item may be that big)', () => {
    const runs = fc.record({
      // From 50,000 runs up: the old spread into Math.max overflowed the stack near 130,000.
      count: fc.integer({ min: 50_000, max: 250_000 }),
      width: fc.integer({ min: 1, max: 3 }),
      longest: fc.integer({ min: 1, max: 40 }),
    });
    fc.assert(
      fc.property(runs, ({ count, width, longest }) => {
        const c = `${'`'.repeat(width)} `.repeat(count) + '`'.repeat(longest);
        const block = fence(c, 'json');
        const bar = '`'.repeat(Math.max(3, Math.max(width, longest) + 1));
        expect(block.startsWith(`${bar}json\n`)).toBe(true);
        expect(block.endsWith(`\n${bar}`)).toBe(true);
        expect(block.length).toBe(c.length + 2 * bar.length + 'json'.length + 2);
      }),
      fuzz(6),
    );
  });
});

describe('PromptSynthesizer: the shipped prompts, with hostile intents, names and items', () => {
  const s = new PromptSynthesizer();
  const schema = fc.option(fc.dictionary(nastyText(3), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }), { nil: null });

  it.each(['generic', 'file'] as const)('%s: the prompt is the template with each value in place, and the data block holds exactly the item', (kind) => {
    const template = s.template(kind);
    fc.assert(
      fc.property(nastyText(), nastyText(), item, schema, fc.nat(), (intent, name, unitItem, outputSchema, id) => {
        const out = s.render(template, { intent, job: { id, name }, output_schema: outputSchema }, unitItem);

        const json = JSON.stringify(unitItem, null, 2);
        const bar = '`'.repeat(Math.max(3, longestBacktickRun(json) + 1));
        // The output section has its own check below; here it is left empty.
        const model = expectedRender(template, { intent, job: { id, name }, item: unitItem, item_data: `${bar}json\n${json}\n${bar}`, output_instructions: '' });
        const section = model.spans.find((sp) => sp.path === 'output_instructions')!;
        const tail = model.text.slice(section.end);
        expect(out.slice(0, section.start)).toBe(model.text.slice(0, section.start));
        expect(out.endsWith(tail)).toBe(true);
        if (outputSchema === null) expect(out).toBe(model.text);
        // What the output section added: the data block comes after it, shifted by that much.
        const added = out.slice(section.start, out.length - tail.length);

        // Everything job-wide precedes the item: the output section comes before the data block.
        const data = model.spans.find((sp) => sp.path === 'item_data')!;
        expect(section.end).toBeLessThanOrEqual(data.start);
        // The data block, read from where it starts, ends exactly where the template goes on.
        const dataStart = data.start + added.length;
        expect(out.slice(0, dataStart).endsWith('\n')).toBe(true);
        const read = readFence(out, dataStart);
        expect(read).not.toBeNull();
        expect(read!.info).toBe('json');
        expect(read!.content).toBe(json);
        expect(JSON.parse(read!.content)).toEqual(unitItem);
        expect(read!.end).toBe(data.end + added.length);
        // What every unit of the job shares, and a provider may cache, is everything before the data block.
        expect(s.renderParts(template, { intent, job: { id, name }, output_schema: outputSchema }, unitItem)).toEqual({ prompt: out, shared_prefix_chars: dataStart });

        if (outputSchema !== null) {
          // The schema goes in a fenced block of its own before the item's section, and nothing else is added.
          const open = added.indexOf('\n`') + 1;
          expect(open).toBeGreaterThan(0);
          const schemaBlock = readFence(added, open);
          expect(schemaBlock?.content).toBe(JSON.stringify(outputSchema, null, 2));
          expect(added.slice(schemaBlock!.end)).toBe('\n');
        }
      }),
      fuzz(250),
    );
  });

  it('synthesis: intent, instructions and summary go in verbatim, unexpanded', () => {
    const template = s.template('synthesis');
    fc.assert(
      fc.property(nastyText(), nastyText(), fc.option(nastyText(), { nil: null }), nastyText(), nastyText(), (intent, name, instructions, summary, manifest) => {
        const job = { id: 3, name, user_intent: intent, post_processing_prompt: instructions };
        const out = s.renderSynthesis(job, { manifest_path: manifest, summary });
        const model = expectedRender(template, {
          job: { id: 3, name },
          intent,
          instructions: instructions ?? '',
          summary,
          manifest_path: manifest,
        });
        expect(out).toBe(model.text);
      }),
      fuzz(300),
    );
  });
});
