import { spawnSync } from 'node:child_process';
import { buildSync } from 'esbuild';
import { chmodSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/package-root.js';
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

  it('patterns that overlap, in a list or in braces, give each file once', async () => {
    // Walked from two folders (sub and sub/deep), each finds sub/deep/d.txt.
    const once = ['sub/c.txt', 'sub/deep/d.txt'];
    expect(rel((await collect(fileEnumerator, { base_directory: base, pattern: ['sub/**/*.txt', 'sub/deep/*.txt'] })).items)).toEqual(once);
    expect(rel((await collect(fileEnumerator, { base_directory: base, pattern: '{sub,sub/deep}/**/*.txt' })).items)).toEqual(once);
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

describe('file enumerator: the walk, one lstat a file', () => {
  it('hidden folders stay hidden even when a pattern names what is inside them; include_hidden brings them back', async () => {
    mkdirSync(join(base, 'sub', '.cache', 'deeper'), { recursive: true });
    writeFileSync(join(base, 'sub', '.cache', 'deeper', 'f.txt'), 'x');
    expect(rel((await collect(fileEnumerator, { base_directory: base, pattern: '**/*.txt' })).items)).toEqual(['b.txt', 'big.txt', 'sub/c.txt', 'sub/deep/d.txt']);
    expect((await failure(fileEnumerator, { base_directory: base, pattern: 'sub/.cache/**' })).message).toBe(
      `enumerator_config.pattern: sub/.cache/** matched no files under ${base}; no job was created`,
    );
    expect(rel((await collect(fileEnumerator, { base_directory: base, pattern: 'sub/.cache/**', include_hidden: true })).items)).toEqual([
      'sub/.cache/deeper/f.txt',
      'sub/.cache/e.txt',
    ]);
  }, 10_000);

  it('links: a linked folder inside is walked only when following, a dangling link is left out, an excluded outside link is never looked at', async () => {
    symlinkSync(join(base, 'sub'), join(base, 'sub-link'));
    symlinkSync(join(base, 'nothing-here'), join(base, 'dangling.txt'));
    symlinkSync(t.path('outside'), join(base, 'out-link'));
    const off = await collect(fileEnumerator, { base_directory: base, pattern: '**/*.txt' });
    expect(rel(off.items)).toEqual(['b.txt', 'big.txt', 'sub/c.txt', 'sub/deep/d.txt']);
    const on = await collect(fileEnumerator, { base_directory: base, pattern: '**/*.txt', follow_symlinks: true, exclude_patterns: ['out-link/'] });
    expect(rel(on.items)).toEqual(['b.txt', 'big.txt', 'sub-link/c.txt', 'sub-link/deep/d.txt', 'sub/c.txt', 'sub/deep/d.txt']);
    // Files under a followed folder link carry their own path, and real sizes.
    expect(on.items.find((i) => i.relative_path === 'sub-link/c.txt')).toMatchObject({ file_path: join(base, 'sub-link', 'c.txt'), file_size: 3 });
    // A static pattern through a folder link that leads outside is refused, followed or not.
    for (const follow_symlinks of [false, true]) {
      const err = await failure(fileEnumerator, { base_directory: base, pattern: 'out-link/passwd', follow_symlinks });
      expect(err.message).toBe(
        `enumerator_config.follow_symlinks: out-link/passwd is a symbolic link that leads outside base_directory (to ${t.path('outside', 'passwd')}); it is never followed. Leave it out with exclude_patterns`,
      );
    }
  }, 10_000);

  it('a link to a file with follow_symlinks off is left out, even when a static pattern names it', async () => {
    symlinkSync(join(base, 'b.txt'), join(base, 'again.txt'));
    const { items, skipped } = await collect(fileEnumerator, { base_directory: base, pattern: ['again.txt', 'b.txt'] });
    expect(rel(items)).toEqual(['b.txt']);
    expect(skipped).toEqual([]);
  });

  it('an unreadable folder is a clear error that names it and says what to do', () => {
    mkdirSync(join(base, 'locked'));
    writeFileSync(join(base, 'locked', 'x.txt'), 'x');
    chmodSync(join(base, 'locked'), 0o000);
    try {
      // Root reads every folder: the enumeration then runs as nobody, on the built module bundled
      // into the test's own folder (the checkout may sit in a 0700 folder nobody cannot enter).
      const asRoot = process.getuid?.() === 0;
      if (asRoot) for (const dir of [t.dir, base]) chmodSync(dir, 0o755);
      const bundle = join(t.dir, 'file-enumerator.cjs');
      buildSync({ entryPoints: [join(PACKAGE_ROOT, 'dist', 'enumerators', 'file.js')], bundle: true, platform: 'node', format: 'cjs', outfile: bundle, logLevel: 'silent' });
      const script = `
        const { fileEnumerator } = await import(${JSON.stringify(bundle)});
        const cfg = fileEnumerator.configSchema.parse({ base_directory: ${JSON.stringify(base)} });
        try { for await (const _ of fileEnumerator.enumerate(cfg, { signal: new AbortController().signal })); console.log('no error'); }
        catch (err) { console.log(err.code + ': ' + err.message); }`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
      expect(r.stdout.trim()).toBe(
        `enumeration_failed: enumerator_config.base_directory: cannot read locked under ${base}: permission denied; leave it out with exclude_patterns, or fix its permissions; no job was created`,
      );
    } finally {
      chmodSync(join(base, 'locked'), 0o755);
    }
  }, 20_000);
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
