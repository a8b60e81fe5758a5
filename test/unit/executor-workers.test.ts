import { afterEach, describe, expect, it, vi } from 'vitest';
import { CoolDowns } from '../../src/executor/cool-downs.js';
import { checkOutput, extractJson, feedbackSection } from '../../src/executor/output-schema.js';
import { decide } from '../../src/executor/retry-policy.js';
import { SlidingWindowThrottle } from '../../src/executor/throttle.js';
import { PromptSynthesizer } from '../../src/executor/prompt-synthesizer.js';

const s = { maxRetries: 2, baseMs: 100, maxMs: 1000 };

afterEach(() => {
  vi.useRealTimers();
});

describe('output schema', () => {
  const schema = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };

  it('extracts JSON from the whole answer, a fenced block, or the widest braces', () => {
    expect(extractJson(' {"n": 1} ')).toEqual({ found: true, value: { n: 1 } });
    expect(extractJson('Here:\n```json\n{"n": 2}\n```\nbye')).toEqual({ found: true, value: { n: 2 } });
    expect(extractJson('The answer is {"n": 3}.')).toEqual({ found: true, value: { n: 3 } });
    expect(extractJson('no json here')).toEqual({ found: false });
  });

  it('keeps a matching value as structured_output and turns a mismatch into invalid_output', () => {
    expect(checkOutput({ status: 'succeeded', output: '{"n": 4}' }, schema)).toMatchObject({ status: 'succeeded', structured_output: { n: 4 } });
    const bad = checkOutput({ status: 'succeeded', output: '{"n": "four"}', cost_usd: 0.1 }, schema);
    expect(bad).toMatchObject({ status: 'failed', kind: 'invalid_output', output: '{"n": "four"}', cost_usd: 0.1 });
    expect(bad.status === 'failed' && bad.error).toBe('output_schema: the answer does not match: /n: must be integer {"type":"integer"}');
    expect(checkOutput({ status: 'succeeded', output: 'nothing' }, schema)).toMatchObject({ kind: 'invalid_output', error: 'output_schema: the answer contains no JSON value' });
  });

  it('an invalid_output failure spends an attempt and keeps the answer for the feedback', () => {
    const d = decide({ status: 'failed', kind: 'invalid_output', error: 'output_schema: x', output: '{}' }, 0, s, 0);
    expect(d.write).toMatchObject({ next: 'PENDING', spent: true, error_kind: 'invalid_output', output: '{}' });
    expect(decide({ status: 'failed', kind: 'invalid_output', error: 'e' }, 2, s, 0).write.next).toBe('FAILED');
  });

  it('feeds the errors back fenced, so placeholders and fences inside stay inert', () => {
    const section = feedbackSection('/n: must be integer {{intent}}', 'answer with ``` fence and {{item.x}}');
    expect(section).toContain('{{intent}}');
    expect(section).toContain('{{item.x}}');
    expect(section).toContain('````text\nanswer with ``` fence');
    // Appended after rendering, so the synthesizer never sees it as a template.
    const rendered = new PromptSynthesizer().render('Task: {{intent}}', { intent: 'do it', job: { id: 1, name: 'j' } }, {});
    expect(rendered + section).toContain('Task: do it');
  });
});

describe('quota and Retry-After in the retry policy', () => {
  it('pauses on quota_exhausted with the reset time, and holds the unit until then', () => {
    const d = decide({ status: 'failed', kind: 'quota_exhausted', error: 'usage limit reached', resets_at: Date.UTC(2030, 0, 1) }, 0, s, 0);
    expect(d.write.pause_job?.reason).toBe('quota_exhausted: usage limit reached (resets at 2030-01-01T00:00:00.000Z)');
    expect(d.write).toMatchObject({ next: 'PENDING', spent: false, available_at: Date.UTC(2030, 0, 1) });
  });

  it("a 5xx's Retry-After is a floor under the backoff", () => {
    const d = decide({ status: 'failed', kind: 'retryable', error: '503', retry_after_ms: 30_000 }, 0, s, 1000);
    expect(d.write).toMatchObject({ next: 'PENDING', spent: true, available_at: 31_000 });
  });
});

describe('cool-downs per worker type', () => {
  it('uses the server delay when given, else a growing backoff, until a success', () => {
    let now = 0;
    const c = new CoolDowns((strikes) => strikes * 100, () => now);
    expect(c.hit('claude', 1500)).toBe(1500);
    expect(c.remainingMs('claude')).toBe(1500);
    expect(c.remainingMs('http-llm')).toBe(0);
    expect(c.hit('claude', undefined)).toBe(200);
    expect(c.remainingMs('claude')).toBe(1500); // the longer cool-down stands
    now = 1500;
    expect(c.remainingMs('claude')).toBe(0);
    c.recovered('claude');
    expect(c.hit('claude', undefined)).toBe(100);
  });

  it('wait() resolves when the cool-down ends and rejects on abort', async () => {
    vi.useFakeTimers();
    const c = new CoolDowns(() => 0);
    c.hit('t', 1000);
    let done = false;
    const waiting = c.wait('t', new AbortController().signal).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(2);
    await waiting;
    expect(done).toBe(true);
    c.hit('t', 1000);
    const ac = new AbortController();
    const aborted = c.wait('t', ac.signal);
    ac.abort('cancelled');
    await expect(aborted).rejects.toBe('cancelled');
  });
});

describe('RPM and TPM throttle', () => {
  it('holds the request past the RPM limit until the oldest leaves the one-minute window', async () => {
    vi.useFakeTimers();
    const t = new SlidingWindowThrottle();
    const signal = new AbortController().signal;
    await t.acquire('k', { rpm: 2 }, 0, signal);
    await vi.advanceTimersByTimeAsync(10_000);
    await t.acquire('k', { rpm: 2 }, 0, signal);
    let third = false;
    const pending = t.acquire('k', { rpm: 2 }, 0, signal).then(() => (third = true));
    // Another key is not held back.
    await t.acquire('other', { rpm: 2 }, 0, signal);
    await vi.advanceTimersByTimeAsync(49_000);
    expect(third).toBe(false);
    await vi.advanceTimersByTimeAsync(1_100);
    await pending;
    expect(third).toBe(true);
  });

  it('counts tokens, settles estimates to the real usage, and lets one oversized request through alone', async () => {
    vi.useFakeTimers();
    const t = new SlidingWindowThrottle();
    const signal = new AbortController().signal;
    const first = await t.acquire('k', { tpm: 1000 }, 900, signal);
    first.settle(100); // the real usage was smaller: room opens up
    await t.acquire('k', { tpm: 1000 }, 800, signal);
    let next = false;
    const pending = t.acquire('k', { tpm: 1000 }, 5000, signal).then(() => (next = true));
    await vi.advanceTimersByTimeAsync(59_000);
    expect(next).toBe(false);
    await vi.advanceTimersByTimeAsync(1_100);
    await pending;
    expect(next).toBe(true);
  });

  it('rejects a waiting request when its unit is aborted', async () => {
    vi.useFakeTimers();
    const t = new SlidingWindowThrottle();
    await t.acquire('k', { rpm: 1 }, 0, new AbortController().signal);
    const ac = new AbortController();
    const waiting = t.acquire('k', { rpm: 1 }, 0, ac.signal);
    ac.abort('timeout');
    await expect(waiting).rejects.toBe('timeout');
  });
});

describe('worker configs', () => {
  it('parses a job’s worker_config once while its text stays, however often the job row moves, and again when the text changes', async () => {
    const { z } = await import('zod');
    const { WorkerConfigs } = await import('../../src/executor/worker-configs.js');
    let parses = 0;
    const worker = { configSchema: z.object({ n: z.number() }).transform((c) => (parses++, c)) } as never;
    const configs = new WorkerConfigs();
    const first = configs.of(worker, { id: 1, worker_config: '{"n":1}' });
    // Claims and outcomes move the job's updated_at; the config text is what counts.
    for (let i = 0; i < 5; i++) expect(configs.of(worker, { id: 1, worker_config: '{"n":1}' })).toBe(first);
    expect(parses).toBe(1);
    expect(configs.of(worker, { id: 1, worker_config: '{"n":2}' })).toEqual({ n: 2 });
    expect(configs.of(worker, { id: 2, worker_config: '{"n":1}' })).toEqual({ n: 1 });
    expect(parses).toBe(3);
    expect(() => configs.of(worker, { id: 3, worker_config: '{"n":"x"}' })).toThrow(/worker_config/);
  });
});
