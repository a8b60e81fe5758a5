import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AbpError } from '../../src/domain/errors.js';
import { JobSpec, parseJobSpec } from '../../src/domain/job-spec.js';
import { SyncOptions } from '../../src/domain/sync-pair.js';
import { fuzz, nastyText } from './support.js';

/**
 * parseJobSpec is the one door for specs from the CLI, MCP and HTTP, so it meets
 * whatever JSON a person or a model sends. It either returns a spec or throws an
 * AbpError whose message names the field; nothing else may escape.
 */

const FIELDS = Object.keys(JobSpec.shape);
/** Keys that mean something to the spec, the sync section, or to JavaScript itself. */
const KEYS = [...FIELDS, 'source', 'target', 'type', 'path', 'table', 'url', 'pair', 'mode', 'options', 'transform', 'toString', 'valueOf', '__proto__', 'constructor'];

/** Any JSON value, with object keys drawn mostly from the names above; parsed back from text, as a spec file would be. */
const json = fc
  .letrec<{ value: unknown; leaf: unknown; array: unknown[]; object: Record<string, unknown> }>((tie) => ({
    value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('array'), tie('object')),
    leaf: fc.oneof(
      fc.constant(null),
      fc.boolean(),
      fc.integer({ min: -3, max: 2000 }),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.constantFrom('dir', 'csv', 'json', 'jsonl', 'sqlite', 'postgres', 'one-way', 'two-way', 'shell', ' ', ''),
      nastyText(4),
    ),
    array: fc.array(tie('value'), { maxLength: 4 }),
    object: fc.dictionary(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...KEYS) }, fc.string({ maxLength: 6 })), tie('value'), { maxKeys: 5 }),
  }))
  .value.map((v) => JSON.parse(JSON.stringify(v)) as unknown);

/** One side of a sync pair: anything, or a provider whose fields are anything. */
const side = fc.oneof(json, fc.record({ type: json, path: json, table: json }, { requiredKeys: [] }));

/** A spec close to valid: the known fields, each either sensible or anything at all. */
const nearSpec = fc
  .record(
    Object.fromEntries(
      FIELDS.map((f) => [
        f,
        fc.oneof(
          {
            name: fc.constant('n'),
            user_intent: fc.constant('do it'),
            enumerator_type: fc.constant('csv'),
            worker_type: fc.constant('shell'),
            sync: fc.record({ source: side, target: side, pair: json, mode: json, options: json }, { requiredKeys: [] }),
          }[f] ?? json,
          json,
        ),
      ]),
    ),
    { requiredKeys: [] },
  )
  .map((v) => JSON.parse(JSON.stringify(v)) as unknown);

/** Calls parseJobSpec and returns what it threw, or undefined. */
function refusal(input: unknown): unknown {
  try {
    parseJobSpec(input);
    return undefined;
  } catch (err) {
    return err;
  }
}

/** Every "; "-separated problem starts with the field it is about: a spec field path, "(root)", or "unknown field". */
function expectNamesAField(err: unknown): void {
  expect(err).toBeInstanceOf(AbpError);
  const e = err as AbpError;
  expect(e.code).toBe('invalid_input');
  expect(e.message.length).toBeGreaterThan(0);
  const named = /^(?:unknown fields?(?: in ([^:]+))?: |\(root\): |([^:\s]+): )/.exec(e.message);
  expect(named, e.message).not.toBeNull();
  const path = named![1] ?? named![2];
  if (path !== undefined) expect(FIELDS, e.message).toContain(path.split('.')[0]);
}

describe('JobSpec: any JSON is a spec or a refusal that names a field', () => {
  it('arbitrary JSON values', () => {
    fc.assert(
      fc.property(json, (input) => {
        const err = refusal(input);
        if (err !== undefined) expectNamesAField(err);
      }),
      fuzz(500),
    );
  });

  it('a value that makes the schema library itself throw is refused by its field', () => {
    // fast-check found it: zod length-checks any value with a `length`, and compares it as a number.
    for (const [input, field] of [
      [{ name: { length: { toString: 0 } } }, 'name'],
      [{ name: 'n', user_intent: 'i', enumerator_type: 'csv', prompt_template: { length: { valueOf: {}, toString: {} } } }, 'prompt_template'],
    ] as const) {
      const err = refusal(input);
      expectNamesAField(err);
      expect((err as AbpError).message).toMatch(new RegExp(`^${field}: cannot be read as this field's type`));
    }
  });

  it('specs whose known fields hold arbitrary JSON, the sync section included', () => {
    fc.assert(
      fc.property(nearSpec, (input) => {
        const err = refusal(input);
        if (err !== undefined) expectNamesAField(err);
      }),
      fuzz(400),
    );
  });
});

/** Text that survives trimming with at least one character left, as a name must. */
const text = (max: number) => nastyText(8).filter((s) => s.trim().length >= 1 && s.trim().length <= max);

const validSpec = fc.record(
  {
    name: text(200),
    user_intent: text(100_000),
    enumerator_type: fc.string({ minLength: 1, maxLength: 10 }),
    worker_type: fc.string({ minLength: 1, maxLength: 10 }),
    enumerator_config: fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
    worker_config: fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
    max_workers: fc.integer({ min: 1, max: 1000 }),
    max_retries: fc.integer({ min: 0, max: 100 }),
    timeout_seconds: fc.double({ min: Number.MIN_VALUE, max: 7 * 24 * 3600, noNaN: true }),
    output_schema: fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
    max_cost_usd: fc.double({ min: Number.MIN_VALUE, max: 1e9, noNaN: true }),
    post_processing_prompt: nastyText().filter((s) => s.length > 0),
    allow_partial: fc.boolean(),
    auto_resume: fc.boolean(),
    prompt_template: nastyText().filter((s) => s.length > 0),
  },
  { requiredKeys: ['name', 'user_intent', 'enumerator_type'] },
);
const asJson = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe('JobSpec: valid specs parse, unknown fields never pass', () => {
  it('a valid spec parses to itself, trimmed, with every default filled in', () => {
    fc.assert(
      fc.property(validSpec.map(asJson), (input) => {
        const spec = parseJobSpec(input);
        const defaults = { worker_type: 'claude', enumerator_config: {}, worker_config: {}, max_workers: 4, max_retries: 3, timeout_seconds: 600, allow_partial: false, auto_resume: false, cache: false };
        expect(spec).toEqual({ ...defaults, ...input, name: input.name.trim(), user_intent: input.user_intent.trim() });
      }),
      fuzz(300),
    );
  });

  it('one extra key, at the top or in the sync options, is refused by name', () => {
    const extra = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'toString', 'max_worker', 'Name', 'sync '), fc.string({ minLength: 1, maxLength: 8 }));
    fc.assert(
      fc.property(validSpec.map(asJson), extra, json, fc.boolean(), (input, key, value, nested) => {
        fc.pre(!(nested ? Object.keys(SyncOptions.shape) : FIELDS).includes(key));
        const target: Record<string, unknown> = nested ? {} : input;
        if (nested) {
          const { enumerator_type: _e, worker_type: _w, ...rest } = input;
          input = { ...rest, sync: { source: { type: 'jsonl', path: 'a.jsonl' }, target: { type: 'jsonl', path: 'b.jsonl' }, options: target } } as never;
        }
        // A data property even for "__proto__", as JSON.parse makes it.
        Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
        const err = refusal(asJson(input));
        expect(err).toBeInstanceOf(AbpError);
        expect((err as AbpError).message).toContain(`unknown field${nested ? ' in sync.options' : ''}: ${key}`);
      }),
      fuzz(300),
    );
  });
});
