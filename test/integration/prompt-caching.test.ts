import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { estimateTokens, markedPrefix, startMockAnthropic, withPromptCache, type MockServer, type RecordedRequest } from '../fixtures/mock-anthropic.js';
import { Sandbox } from '../helpers/cli.js';

let sb: Sandbox | undefined;
let mock: MockServer | undefined;

afterEach(async () => {
  await sb?.cleanup();
  await mock?.close();
  sb = undefined;
  mock = undefined;
});

const EPHEMERAL = { type: 'ephemeral' };
const itemOf = (text: string) => /text of (\w+)/.exec(text)?.[1];
const blocks = (req: RecordedRequest) => req.body.messages[0].content as { type: string; text: string; cache_control?: unknown }[];

describe('prompt caching: http-llm over the Anthropic Messages API', () => {
  it('every unit marks the same shared prefix; the first writes the cache, the others read it, and each is priced at the cache prices', async () => {
    const schema = { type: 'object', properties: { label: { type: 'string' } }, required: ['label'] };
    const cache = withPromptCache((req) => ({ type: 'text', text: JSON.stringify({ label: `L-${itemOf(blocks(req)[1]?.text ?? '')}` }), usage: { output_tokens: 12 } }));
    mock = await startMockAnthropic(cache);
    sb = new Sandbox({ ABP_SKIP_TEST: '1', ANTHROPIC_API_KEY: 'sk-test-anthropic' });
    const ids = ['a1', 'b2', 'c3', 'd4'];
    const items = sb.path('items.csv');
    writeFileSync(items, ['id,text', ...ids.map((id) => `${id},text of ${id}`)].join('\n') + '\n');
    const spec = sb.path('spec.json');
    writeFileSync(
      spec,
      JSON.stringify({
        name: 'cached labels',
        user_intent: 'Classify the text.',
        enumerator_type: 'csv',
        enumerator_config: { file_path: items, id_column: 'id' },
        worker_type: 'http-llm',
        // The price table's claude-sonnet-4: $3 in, $15 out, $0.30 cache read, $3.75 cache write per million tokens.
        worker_config: { api: 'anthropic', base_url: mock.url, model: 'claude-sonnet-4-5', system: 'Be brief.' },
        output_schema: schema,
        max_workers: 2,
        max_retries: 0,
        timeout_seconds: 30,
      }),
    );
    const id = (await sb.ok(['create', '--spec', spec])).job_id as number;
    await sb.ok(['start', String(id)]);
    const done = await sb.waitFor(id, (st) => ['COMPLETED', 'FAILED', 'PAUSED'].includes(st.status), 60_000);
    expect(done.status).toBe('COMPLETED');

    // What reached the API: the shared prefix, marked, first; the item in the block after it.
    expect(mock.requests).toHaveLength(ids.length);
    const prefixes = new Set<string>();
    for (const req of mock.requests) {
      const [shared, rest, ...more] = blocks(req);
      expect(more).toEqual([]);
      expect(shared).toEqual({ type: 'text', text: expect.any(String), cache_control: EPHEMERAL });
      expect(rest).toEqual({ type: 'text', text: expect.any(String) });
      prefixes.add(shared!.text);
      // Everything job-wide (the name, the intent, the output instructions) is in the prefix, nothing of the item.
      expect(shared!.text).toContain('"cached labels"');
      expect(shared!.text).toContain('Classify the text.');
      expect(shared!.text).toContain('## Output');
      expect(shared!.text).not.toMatch(/text of/);
      expect(rest!.text).toMatch(/^```json\n/);
      expect(ids).toContain(itemOf(rest!.text));
      expect(req.body.system).toEqual([{ type: 'text', text: 'Be brief.', cache_control: EPHEMERAL }]);
    }
    expect(prefixes.size).toBe(1);
    // The API caches the system prompt and the prefix together: the cache has exactly that one entry.
    const [prefix] = [...prefixes];
    expect(cache.written).toEqual([`Be brief.${prefix}`]);
    const prefixTokens = markedPrefix(mock.requests[0]!)!.tokens;
    expect(prefixTokens).toBe(estimateTokens(`Be brief.${prefix}`));

    // What each unit recorded: its prompt is the two blocks, its usage the cache's, its cost the cache prices.
    const results = await sb.results(id);
    expect(results.map((r) => r.structured_output.label).sort()).toEqual(ids.map((i) => `L-${i}`));
    const units = await Promise.all(results.map((r) => sb!.ok(['unit', String(r.unit_id)])));
    let writes = 0;
    let sum = 0;
    for (const unit of units) {
      const req = mock.requests.find((r) => itemOf(blocks(r)[1]!.text) === unit.item_id)!;
      expect(unit.prompt).toBe(blocks(req).map((b) => b.text).join(''));
      const uncached = estimateTokens(`Be brief.${unit.prompt}`) - prefixTokens;
      const wrote = unit.usage.cache_write_tokens > 0;
      if (wrote) writes++;
      expect(unit.usage).toEqual({
        input_tokens: uncached,
        output_tokens: 12,
        cache_read_tokens: wrote ? 0 : prefixTokens,
        cache_write_tokens: wrote ? prefixTokens : 0,
      });
      const cost = (uncached * 3 + 12 * 15 + (wrote ? prefixTokens * 3.75 : prefixTokens * 0.3)) / 1e6;
      expect(unit.cost_usd).toBeCloseTo(cost, 9);
      sum += unit.cost_usd;
    }
    expect(writes).toBe(1);
    // The job adds up its units: cost, and tokens (input counts what was not read from or written to the cache).
    expect(done.cost_usd).toBeCloseTo(sum, 9);
    expect(done.tokens).toEqual({ input: units.reduce((n, u) => n + u.usage.input_tokens, 0), output: 12 * ids.length });
  });
});
