import { mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fileEnumerator } from '../../enumerators/file.js';
import { collect, failure, tempDir } from './enumerators-support.js';

let t: ReturnType<typeof tempDir>;
let base: string;
beforeEach(() => {
  t = tempDir();
  base = t.path('base');
  const files: Record<string, string | Buffer> = {
    'b.txt': 'bee',
    'a.md': '# title',
    'sub/c.txt': 'see',
    'sub/deep/d.txt': 'dee',
    '.hidden.txt': 'secret dot file',
    '.git/config': 'git stuff',
    'sub/.cache/e.txt': 'cached',
    'img.bin': Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x01]),
    'big.txt': 'x'.repeat(5000),
  };
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(join(base, rel, '..'), { recursive: true });
    writeFileSync(join(base, rel), content);
  }
  mkdirSync(t.path('outside'));
  writeFileSync(t.path('outside', 'passwd'), 'root:x');
});
afterEach(() => t.cleanup());

const rel = (items: { relative_path?: unknown }[]) => items.map((i) => i.relative_path);

describe('file enumerator', () => {
  it('every visible file, sorted by path, with the item fields', async () => {
    utimesSync(join(base, 'b.txt'), new Date('2024-01-02T03:04:05Z'), new Date('2024-01-02T03:04:05Z'));
    const { items } = await collect(fileEnumerator, { base_directory: base });
    expect(rel(items)).toEqual(['a.md', 'b.txt', 'big.txt', 'img.bin', 'sub/c.txt', 'sub/deep/d.txt']);
    expect(items[1]).toEqual({
      file_path: join(base, 'b.txt'),
      relative_path: 'b.txt',
      file_name: 'b.txt',
      file_extension: '.txt',
      file_size: 3,
      mtime: '2024-01-02T03:04:05.000Z',
      _id: 'b.txt',
    });
  });

  it('include_hidden brings back dot-files and everything inside dot-directories', async () => {
    const { items } = await collect(fileEnumerator, { base_directory: base, include_hidden: true, pattern: '**/*.txt' });
    expect(rel(items)).toEqual(['.hidden.txt', 'b.txt', 'big.txt', 'sub/.cache/e.txt', 'sub/c.txt', 'sub/deep/d.txt']);
    // Without it, naming a hidden directory in the pattern still finds nothing there.
    const err = await failure(fileEnumerator, { base_directory: base, pattern: '.git/*' });
    expect(err.message).toBe(`enumerator_config.pattern: .git/* matched no files under ${base}; no job was created`);
  });

  it('a list of patterns, exclude_patterns, and limit after the sort', async () => {
    const { items } = await collect(fileEnumerator, { base_directory: base, pattern: ['**/*.txt', '*.md'], exclude_patterns: ['big.*'], limit: 3 });
    expect(rel(items)).toEqual(['a.md', 'b.txt', 'sub/c.txt']);
  });

  it('max_file_size leaves big files out and records them as skipped', async () => {
    const { items, skipped } = await collect(fileEnumerator, { base_directory: base, pattern: '*.txt', max_file_size: 100 });
    expect(rel(items)).toEqual(['b.txt']);
    expect(skipped).toEqual([{ item: 'big.txt', reason: '5000 bytes is over max_file_size (100)' }]);
  });

  it('include_content inlines text up to the cap, and refuses binary files', async () => {
    const { items } = await collect(fileEnumerator, { base_directory: base, pattern: ['b.txt', 'big.txt'], include_content: true, max_content_bytes: 1000 });
    expect(items[0]).toMatchObject({ content: 'bee', content_truncated: false });
    expect(items[1]).toMatchObject({ content: 'x'.repeat(1000), content_truncated: true });
    const err = await failure(fileEnumerator, { base_directory: base, pattern: '*.bin', include_content: true });
    expect(err.message).toBe('enumerator_config.include_content: img.bin is a binary file (not UTF-8 text); leave it out with exclude_patterns, or turn include_content off');
  });

  it('symlinks: left out by default; followed inside base_directory; refused when they lead outside', async () => {
    symlinkSync(join(base, 'b.txt'), join(base, 'inner-link.txt'));
    const off = await collect(fileEnumerator, { base_directory: base, pattern: '*.txt' });
    expect(rel(off.items)).toEqual(['b.txt', 'big.txt']);
    const on = await collect(fileEnumerator, { base_directory: base, pattern: '*.txt', follow_symlinks: true });
    expect(rel(on.items)).toEqual(['b.txt', 'big.txt', 'inner-link.txt']);

    symlinkSync(t.path('outside', 'passwd'), join(base, 'escape.txt'));
    const err = await failure(fileEnumerator, { base_directory: base, pattern: '*.txt', follow_symlinks: true });
    expect(err.message).toBe(
      `enumerator_config.follow_symlinks: escape.txt is a symbolic link that leads outside base_directory (to ${t.path('outside', 'passwd')}); it is never followed. Leave it out with exclude_patterns`,
    );
    // A linked directory that leads outside is refused the same way.
    symlinkSync(t.path('outside'), join(base, 'linkdir'));
    const dir = await failure(fileEnumerator, { base_directory: base, pattern: 'linkdir/*', follow_symlinks: true });
    expect(dir.message).toContain('linkdir/passwd is a symbolic link that leads outside base_directory');
    // Not following links, the outside file never appears.
    expect(rel((await collect(fileEnumerator, { base_directory: base, pattern: '**/*' })).items)).not.toContain('linkdir/passwd');
  });
});

describe('file enumerator: bad input, each with its exact error', () => {
  it('a missing directory, and a file where a directory is expected', async () => {
    expect((await failure(fileEnumerator, { base_directory: t.path('nope') })).message).toBe(`enumerator_config.base_directory: no such file or directory: ${t.path('nope')}`);
    expect((await failure(fileEnumerator, { base_directory: join(base, 'b.txt') })).message).toBe(`enumerator_config.base_directory: ${join(base, 'b.txt')} is a file, not a directory`);
  });

  it('a glob that matches nothing', async () => {
    const err = await failure(fileEnumerator, { base_directory: base, pattern: '*.nothing' });
    expect(err.code).toBe('enumeration_failed');
    expect(err.message).toBe(`enumerator_config.pattern: *.nothing matched no files under ${base}; no job was created`);
  });

  it('a pattern that escapes base_directory', async () => {
    expect((await failure(fileEnumerator, { base_directory: base, pattern: '../outside/*' })).message).toBe(
      'enumerator_config.pattern: "../outside/*" leaves base_directory; use a relative glob without ".."',
    );
    expect((await failure(fileEnumerator, { base_directory: base, pattern: ['*.txt', '/etc/*'] })).message).toBe(
      'enumerator_config.pattern: "/etc/*" leaves base_directory; use a relative glob without ".."',
    );
  });

  it('an unknown field and a wrong type', async () => {
    expect((await failure(fileEnumerator, { base_directory: base, recursive: true })).message).toBe('unknown field in enumerator_config: recursive');
    expect((await failure(fileEnumerator, { base_directory: base, follow_symlinks: 'yes' })).message).toBe(
      'enumerator_config.follow_symlinks: Invalid input: expected boolean, received string',
    );
  });
});
