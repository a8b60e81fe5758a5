import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { approvalSha256, dynamicEnumerator } from '../../enumerators/dynamic.js';
import { excludeGlobs, fileEnumerator } from '../../enumerators/file.js';
import { jsonEnumerator } from '../../enumerators/json.js';
import { parseWith } from '../../src/domain/job-spec.js';
import { collect, failure, tempDir } from './enumerators-support.js';

/*
 * Issue 24, enumerator parity with the original ABP: .gitignore rules for
 * exclude_patterns, file_extension with its dot, an encoding for json files, and a
 * context for dynamic code that its approval shows and (since issue 22, with the limits) hashes.
 */

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir();
});
afterEach(() => t.cleanup());

function tree(files: Record<string, string>): string {
  const base = t.path('base');
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(join(base, rel, '..'), { recursive: true });
    writeFileSync(join(base, rel), content);
  }
  return base;
}

const paths = async (config: Record<string, unknown>) => (await collect(fileEnumerator, config)).items.map((i) => i.relative_path);

describe('file enumerator: exclude_patterns read as .gitignore lines', () => {
  it.each([
    // no slash: at any depth, the name itself and everything under a folder of that name
    ['*.md', ['**/*.md', '**/*.md/**']],
    ['node_modules', ['**/node_modules', '**/node_modules/**']],
    ['**/tmp', ['**/tmp', '**/tmp/**']],
    // a slash in the middle, or a leading one: anchored at base_directory
    ['docs/*.md', ['docs/*.md', 'docs/*.md/**']],
    ['/a.md', ['a.md', 'a.md/**']],
    ['/docs/x.md', ['docs/x.md', 'docs/x.md/**']],
    // a trailing slash: folders only, at any depth unless another slash anchors it
    ['build/', ['**/build/**/*']],
    ['/out/', ['out/**/*']],
    ['sub/build/', ['sub/build/**/*']],
  ])('%s → %j', (pattern, globs) => {
    expect(excludeGlobs(pattern)).toEqual(globs);
  });

  it.each([
    ['!keep.md', 'enumerator_config.exclude_patterns: "!keep.md": a "!" pattern (bringing files back) is not supported; narrow enumerator_config.pattern instead'],
    ['/', 'enumerator_config.exclude_patterns: "/" names no file or folder'],
    ['//', 'enumerator_config.exclude_patterns: "//" names no file or folder'],
  ])('%s is refused, naming the field', (pattern, message) => {
    expect(() => excludeGlobs(pattern)).toThrow(message);
  });

  const files = {
    'a.md': '',
    'keep.txt': '',
    'notes.md/inner.txt': '',
    'docs/x.md': '',
    'docs/y.txt': '',
    'sub/a.md': '',
    'sub/b.txt': '',
    'sub/docs/x.md': '',
    'node_modules/p/index.js': '',
    'sub/node_modules/q.js': '',
    'build/out.txt': '',
    'sub/build': 'a file named build',
    '.hidden.md': '',
  };

  it('a pattern without a slash matches at any depth, and a folder it names with everything under it', async () => {
    const base = tree(files);
    expect(await paths({ base_directory: base, exclude_patterns: ['*.md'] })).toEqual([
      'build/out.txt',
      'docs/y.txt',
      'keep.txt',
      'node_modules/p/index.js',
      'sub/b.txt',
      'sub/build',
      'sub/node_modules/q.js',
    ]);
    expect(await paths({ base_directory: base, exclude_patterns: ['node_modules', '*.md'] })).toEqual(['build/out.txt', 'docs/y.txt', 'keep.txt', 'sub/b.txt', 'sub/build']);
  });

  it('a pattern with a slash, or a leading one, is anchored at base_directory', async () => {
    const base = tree(files);
    const left = await paths({ base_directory: base, exclude_patterns: ['docs/*.md', '/a.md'] });
    expect(left).not.toContain('docs/x.md');
    expect(left).not.toContain('a.md');
    expect(left).toContain('sub/docs/x.md');
    expect(left).toContain('sub/a.md');
    expect(left).toContain('docs/y.txt');
  });

  it('a trailing slash matches only folders: the folder build goes, the file sub/build stays', async () => {
    const base = tree(files);
    const left = await paths({ base_directory: base, exclude_patterns: ['build/', 'node_modules/'] });
    expect(left).not.toContain('build/out.txt');
    expect(left).toContain('sub/build');
    expect(left.some((p) => String(p).includes('node_modules'))).toBe(false);
  });

  it('with include_hidden, "*.md" also leaves out dot-files, as .gitignore does', async () => {
    const base = tree(files);
    const left = await paths({ base_directory: base, include_hidden: true, exclude_patterns: ['*.md'] });
    expect(left).not.toContain('.hidden.md');
    expect(left).toContain('keep.txt');
  });

  it('bad exclude patterns are named: "..", and "!"', async () => {
    const base = tree(files);
    expect((await failure(fileEnumerator, { base_directory: base, exclude_patterns: ['/sub/../..'] })).message).toBe(
      'enumerator_config.exclude_patterns: "/sub/../.." leaves base_directory; use a relative glob without ".."',
    );
    expect((await failure(fileEnumerator, { base_directory: base, exclude_patterns: ['*.md', '!a.md'] })).message).toBe(
      'enumerator_config.exclude_patterns: "!a.md": a "!" pattern (bringing files back) is not supported; narrow enumerator_config.pattern instead',
    );
  });
});

describe('file enumerator: file_extension as the original ABP gave it', () => {
  it('lowercase, with its dot; empty without one', async () => {
    const base = tree({ 'Photo.JPG': '', 'archive.tar.gz': '', README: '', 'trailing.': '', '.bashrc': '', 'sub/Notes.Md': '' });
    const { items } = await collect(fileEnumerator, { base_directory: base, include_hidden: true });
    expect(Object.fromEntries(items.map((i) => [i.relative_path, i.file_extension]))).toEqual({
      '.bashrc': '',
      'Photo.JPG': '.jpg',
      README: '',
      'archive.tar.gz': '.gz',
      'sub/Notes.Md': '.md',
      'trailing.': '',
    });
  });
});

describe('json enumerator: encoding, as csv has it', () => {
  function file(name: string, content: Buffer): string {
    const p = t.path(name);
    writeFileSync(p, content);
    return p;
  }

  it('a latin-1 JSON Lines file, read with encoding latin1', async () => {
    const p = file('people.jsonl', Buffer.from('{"name":"café"}\n{"name":"naïve","city":"Zürich"}\n', 'latin1'));
    const { items } = await collect(jsonEnumerator, { file_path: p, encoding: 'latin1' });
    expect(items).toEqual([
      { name: 'café', _index: 0, _id: 0 },
      { name: 'naïve', city: 'Zürich', _index: 1, _id: 1 },
    ]);
  });

  it('a UTF-16LE JSON file with a byte order mark, read with encoding utf-16le', async () => {
    const p = file('people.json', Buffer.from('\uFEFF[{"name":"Zoë","id":"z"},{"name":"日本","id":"j"}]', 'utf16le'));
    const { items } = await collect(jsonEnumerator, { file_path: p, encoding: 'utf-16le', id_field: 'id' });
    expect(items).toEqual([
      { name: 'Zoë', id: 'z', _index: 0, _id: 'z' },
      { name: '日本', id: 'j', _index: 1, _id: 'j' },
    ]);
  });

  it('a UTF-16LE JSON Lines file larger than one read, and a UTF-8 one with the utf8 spelling and a BOM', async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ i, text: `ünïcödé ${'→'.repeat(i % 7)}` }));
    const p = file('big.jsonl', Buffer.from(`\uFEFF${lines.join('\r\n')}\r\n`, 'utf16le'));
    const { items } = await collect(jsonEnumerator, { file_path: p, encoding: 'utf-16le' });
    expect(items).toHaveLength(5000);
    expect(items[4999]).toEqual({ i: 4999, text: `ünïcödé ${'→'.repeat(4999 % 7)}`, _index: 4999, _id: 4999 });
    const u = file('u.ndjson', Buffer.from('\uFEFF{"a":"ü"}\n', 'utf8'));
    expect((await collect(jsonEnumerator, { file_path: u, encoding: 'utf8' })).items).toEqual([{ a: 'ü', _index: 0, _id: 0 }]);
  });

  it('invalid UTF-8 under the default encoding names the line and enumerator_config.encoding, in both modes', async () => {
    const latin = Buffer.from('{"name":"plain"}\n{"name":"café"}\n', 'latin1');
    const l = file('people.jsonl', latin);
    const err = await failure(jsonEnumerator, { file_path: l });
    expect(err.code).toBe('enumeration_failed');
    expect(err.message).toBe(`json ${l}: line 2: invalid UTF-8 (byte 0xe9); re-save the file as UTF-8 or set enumerator_config.encoding to the file's encoding (utf-16le, latin1)`);
    const j = file('people.json', Buffer.from('[\n"plain",\n"café"\n]', 'latin1'));
    expect((await failure(jsonEnumerator, { file_path: j, encoding: 'utf-8' })).message).toBe(
      `json ${j}: line 3: invalid UTF-8 (byte 0xe9); re-save the file as UTF-8 or set enumerator_config.encoding to the file's encoding (utf-16le, latin1)`,
    );
  });

  it('an unknown encoding is named with the ones there are', async () => {
    const err = await failure(jsonEnumerator, { file_path: 'x.json', encoding: 'cp1252' });
    expect(err.message).toBe('enumerator_config.encoding: Invalid option: expected one of "utf-8"|"utf8"|"utf-16le"|"latin1"');
  });
});

describe('dynamic enumerator: context', () => {
  const code = 'export default (ctx) => [{ region: ctx.context.region ?? null, keys: Object.keys(ctx.context), frozen: Object.isFrozen(ctx) }]';
  /** The hash a person approves for this code with `config` (its context and limits), defaults filled in as the orchestrator does. */
  const shaOf = (config: Record<string, unknown>) => approvalSha256(parseWith(dynamicEnumerator.configSchema, { code, ...config }, 'enumerator_config'));
  const sha = shaOf({});
  const run = (config: Record<string, unknown>) => collect(dynamicEnumerator, { code, ...config }, { approvedCodeSha256: shaOf(config) });

  it('the same code, approved with each of two contexts, yields items from each; without one, ctx.context is {}', async () => {
    expect((await run({ context: { region: 'eu', city: 'Zürich' } })).items).toEqual([{ region: 'eu', keys: ['region', 'city'], frozen: true, _index: 0, _id: 0 }]);
    expect((await run({ context: { region: 'us' } })).items).toEqual([{ region: 'us', keys: ['region'], frozen: true, _index: 0, _id: 0 }]);
    expect((await run({})).items).toEqual([{ region: null, keys: [], frozen: true, _index: 0, _id: 0 }]);
  });

  // Changed deliberately (issue 22): the context and the limits used to be outside the hash, so an approved
  // code could be re-run with any values and any limits; now the hash binds all of them.
  it('the approval shows the context and limits beside the code, and its hash covers all three', () => {
    const request = (config: Record<string, unknown> = {}) => dynamicEnumerator.approvalFor?.(parseWith(dynamicEnumerator.configSchema, { code, ...config }, 'enumerator_config'));
    const limits = { timeout_seconds: 60, max_memory_mb: 256, limit: null };
    expect(request({ context: { region: 'eu' } })).toEqual({ code, code_sha256: shaOf({ context: { region: 'eu' } }), context: { region: 'eu' }, limits });
    expect(request()).toEqual({ code, code_sha256: sha, limits });
    const hashes = [
      request(),
      request({ context: {} }),
      request({ context: { region: 'eu' } }),
      request({ context: { region: 'us' } }),
      request({ timeout_seconds: 61 }),
      request({ max_memory_mb: 512 }),
      request({ limit: 10 }),
    ].map((r) => r?.code_sha256);
    // An absent context is {} (what the code receives): the same approval. Every other change is a new one.
    expect(hashes[1]).toBe(hashes[0]);
    expect(new Set(hashes).size).toBe(hashes.length - 1);
    // The hash is of canonical JSON: the context's key order does not matter.
    expect(request({ context: { a: 1, b: { c: 2, d: 3 } } })?.code_sha256).toBe(request({ context: { b: { d: 3, c: 2 }, a: 1 } })?.code_sha256);
    // It differs from the code's own sha256 (which older approvals recorded), so those approvals do not carry over.
    expect(sha).not.toBe(createHash('sha256').update(code).digest('hex'));
  });

  it.each([
    [[1, 2], 'enumerator_config.context: must be a JSON object, e.g. {"region": "eu"}'],
    ['eu', 'enumerator_config.context: must be a JSON object, e.g. {"region": "eu"}'],
    [null, 'enumerator_config.context: must be a JSON object, e.g. {"region": "eu"}'],
    [{ n: Number.NaN }, 'enumerator_config.context: n is NaN, which JSON cannot hold'],
    [{ a: [{ when: new Date(0) }] }, 'enumerator_config.context: a[0].when is Date, which is not plain JSON (objects, arrays, strings, numbers, booleans, null)'],
    [{ a: { b: undefined } }, 'enumerator_config.context: a.b is undefined, which is not plain JSON (objects, arrays, strings, numbers, booleans, null)'],
  ])('a context of %j is refused, naming the field', async (context, message) => {
    const err = await failure(dynamicEnumerator, { code, context }, { approvedCodeSha256: sha });
    expect(err.code).toBe('invalid_input');
    expect(err.message).toBe(message);
  });

  it('a context over 64 KiB of JSON is refused; one just under it runs', async () => {
    const over = await failure(dynamicEnumerator, { code, context: { blob: 'x'.repeat(64 * 1024) } }, { approvedCodeSha256: sha });
    expect(over.message).toBe('enumerator_config.context: 65547 bytes of JSON, over the 65536-byte cap; pass parameters here; larger data belongs to the csv, json or file enumerators (dynamic code can read no other file)');
    const under = await run({ context: { region: 'eu', blob: 'x'.repeat(64 * 1024 - 40) } });
    expect(under.items[0]).toMatchObject({ region: 'eu', keys: ['region', 'blob'] });
  });
});
