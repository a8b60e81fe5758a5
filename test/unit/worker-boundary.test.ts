import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { checkedOutcome, eventRow, MAX_TOKENS } from '../../src/executor/worker-boundary.js';
import { MAX_LINE_CHARS, readLines } from '../../workers/agent-process.js';
import { MAX_ARG_BYTES, refusedArguments } from '../../workers/cli-args.js';

/*
 * What a worker hands back is untrusted: checkedOutcome keeps only values every
 * store binds, and says what it left out.
 */
describe('the worker boundary', () => {
  it('keeps a well-formed outcome as it is', () => {
    const outcome = { status: 'succeeded', output: 'ok', structured_output: { a: [1, 'x'] }, session_id: 's-1', cost_usd: 0.25, usage: { input_tokens: 10, output_tokens: 3 }, exit_code: 0, duration_ms: 12, stderr_tail: 'warn' };
    expect(checkedOutcome(outcome)).toEqual({ outcome, dropped: [] });
  });

  it('leaves out a session id that is not an id, and still records the result', () => {
    const { outcome, dropped } = checkedOutcome({ status: 'succeeded', output: 'fine', session_id: { nested: true } });
    expect(outcome).toEqual({ status: 'succeeded', output: 'fine' });
    expect(dropped).toEqual(['session_id {"nested":true} (not an id)']);
  });

  it('refuses negative, fractional and absurd usage and cost: a job cannot cost $-99999.99', () => {
    const negative = checkedOutcome({ status: 'succeeded', output: 'x', cost_usd: -99999.99, usage: { input_tokens: -5, output_tokens: 2 } });
    expect(negative.outcome).toEqual({ status: 'succeeded', output: 'x' });
    expect(negative.dropped.join('\n')).toMatch(/cost_usd -99999\.99 \(not a number from 0/);
    expect(negative.dropped.join('\n')).toMatch(/input_tokens is not a count/);
    for (const usage of [{ input_tokens: 1.5 }, { output_tokens: MAX_TOKENS + 1 }, { input_tokens: '7' }, 'lots']) {
      expect(checkedOutcome({ status: 'succeeded', output: 'x', usage }).outcome).not.toHaveProperty('usage');
    }
    for (const cost of [Number.NaN, Number.POSITIVE_INFINITY, 1e9, '0.1']) expect(checkedOutcome({ status: 'succeeded', output: 'x', cost_usd: cost }).outcome).not.toHaveProperty('cost_usd');
  });

  it('turns values the store cannot bind into text, and NUL into U+FFFD (PostgreSQL refuses NUL in text)', () => {
    const { outcome } = checkedOutcome({ status: 'failed', kind: 'permanent', error: { code: 42 }, output: 'a\u0000b', stderr_tail: 7, exit_code: 2n ** 70n });
    expect(outcome).toEqual({ status: 'failed', kind: 'permanent', error: '{"code":42}', output: 'a\uFFFDb', stderr_tail: '7' });
  });

  it('a structured output JSON cannot hold fails that unit as invalid output', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const value of [{ n: 10n }, cyclic]) {
      const { outcome } = checkedOutcome({ status: 'succeeded', output: 'x', structured_output: value });
      expect(outcome).toMatchObject({ status: 'failed', kind: 'invalid_output', output: 'x' });
      expect(outcome.status === 'failed' && outcome.error).toMatch(/cannot be stored as JSON/);
    }
  });

  it('an unknown status or failure kind, or no outcome at all, is a retryable failure that says so', () => {
    expect(checkedOutcome({ status: 'done', output: 'x' }).outcome).toEqual({ status: 'failed', kind: 'retryable', error: 'the worker returned an outcome with status done' });
    expect(checkedOutcome(undefined).outcome).toMatchObject({ status: 'failed', kind: 'retryable', error: 'the worker returned undefined, not an outcome' });
    const odd = checkedOutcome({ status: 'failed', kind: 'explode', error: 'boom', retry_after_ms: -1 });
    expect(odd.outcome).toEqual({ status: 'failed', kind: 'retryable', error: 'boom' });
    expect(odd.dropped).toEqual(['failure kind explode (read as retryable)', 'retry_after_ms -1 (not a number from 0 to 86400000)']);
  });

  it('an event keeps a short kind and its data as JSON text, whatever the data', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(eventRow({ kind: 'assistant', data: { text: 'hi' } })).toEqual({ kind: 'assistant', data: '{"text":"hi"}' });
    expect(eventRow({ kind: 'x'.repeat(500), data: { big: 2n ** 70n } })).toEqual({ kind: 'x'.repeat(64), data: '{"big":"1180591620717411303424"}' });
    expect(JSON.parse(eventRow({ kind: 'system', data: cyclic }).data)).toHaveProperty('unserialisable');
    expect(eventRow({ kind: { weird: true } as never, data: undefined })).toEqual({ kind: '{"weird":true}', data: 'null' });
  });
});

describe('arguments the system refuses', () => {
  it('names the field with a NUL byte, over 131,072 bytes, or all of them past 2 MiB together', () => {
    expect(refusedArguments([{ field: 'worker_config.args[0]', value: 'ok' }], {})).toBeUndefined();
    expect(refusedArguments([{ field: 'worker_config.args[2]', value: 'a\u0000b' }], {})).toBe('worker_config.args[2] holds a NUL byte once filled in: no program can be given one; pass such data on stdin');
    expect(refusedArguments([{ field: 'a', value: 'x'.repeat(MAX_ARG_BYTES - 1) }], {})).toBeUndefined();
    expect(refusedArguments([{ field: 'worker_config.env.NOTE', value: 'é'.repeat(MAX_ARG_BYTES / 2) }], {})).toMatch(/^worker_config\.env\.NOTE is 131,072 bytes once filled in, over the system's 131,072 per argument/);
    const many = Array.from({ length: 20 }, (_, i) => ({ field: `worker_config.args[${i}]`, value: 'x'.repeat(120_000) }));
    expect(refusedArguments(many, {})).toMatch(/^the arguments and environment are 2,400,\d+ bytes together once filled in/);
  });
});

describe('an agent’s stdout, read as bounded lines', () => {
  const read = (chunks: Buffer[], maxBytes = 1 << 30) =>
    new Promise<{ lines: string[]; cut: number; over: boolean }>((resolve) => {
      const stream = new PassThrough();
      const out = { lines: [] as string[], cut: 0, over: false };
      readLines(stream, (l) => out.lines.push(l), () => out.cut++, maxBytes, () => (out.over = true));
      stream.on('end', () => setImmediate(() => resolve(out)));
      for (const c of chunks) stream.write(c);
      stream.end();
    });

  it('splits on \\n and \\r\\n, across chunks, and keeps a character split between chunks whole', async () => {
    const euro = Buffer.from('€');
    const out = await read([Buffer.from('one\r\ntw'), Buffer.from('o\nthree '), euro.subarray(0, 1), Buffer.concat([euro.subarray(1), Buffer.from('\nlast')])]);
    expect(out).toEqual({ lines: ['one', 'two', 'three €', 'last'], cut: 0, over: false });
  });

  it('cuts a line past MAX_LINE_CHARS and skips the rest of it, however many chunks it spans', async () => {
    const chunk = Buffer.alloc(4 * 1024 * 1024, 'x');
    const out = await read([Buffer.from('before\n'), chunk, chunk, chunk, chunk, chunk, Buffer.from('tail of the long line\nafter\n')]);
    expect(out.lines.map((l) => l.length)).toEqual([6, MAX_LINE_CHARS, 5]);
    expect(out.lines[2]).toBe('after');
    expect(out.cut).toBe(1);
  });

  it('stops at maxBytes and says so once', async () => {
    const out = await read([Buffer.from('a\nb\n'), Buffer.alloc(100, 'z'), Buffer.from('\nnever\n')], 50);
    expect(out).toEqual({ lines: ['a', 'b'], cut: 0, over: true });
  });
});
