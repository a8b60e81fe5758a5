import { lstatSync, realpathSync, statSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { extname, isAbsolute, join, resolve, sep } from 'node:path';
import { z } from 'zod';
import type { Enumerator, Item } from '../src/contracts/enumerator.js';
import { AbpError } from '../src/domain/errors.js';
import { requireDirectory } from './fs-checks.js';
import { isoTime } from '../src/domain/iso-time.js';

const config = z.strictObject({
  base_directory: z.string().min(1).describe('The folder to search; no item ever lies outside it.'),
  pattern: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
    .default('**/*')
    .describe('A glob, or a list of globs, relative to base_directory.'),
  exclude_patterns: z
    .array(z.string().min(1))
    .default([])
    .describe(
      'Globs to leave out, read as .gitignore lines: a pattern without a "/" (a trailing one aside) matches at any depth ("*.md", "node_modules"); one with a "/" (a leading one too) is anchored at base_directory ("docs/*.md"); a trailing "/" matches only folders. A matched folder leaves out everything under it.',
    ),
  include_hidden: z.boolean().default(false).describe('Include dot-files and everything inside dot-directories.'),
  follow_symlinks: z
    .boolean()
    .default(false)
    .describe('Follow symbolic links; a link that leads outside base_directory is refused. Off: links are left out.'),
  limit: z.int().positive().optional().describe('Keep only the first N files, after a stable sort by path.'),
  max_file_size: z.int().positive().optional().describe('Leave out (and record as skipped) files larger than this many bytes.'),
  include_content: z.boolean().default(false).describe('Inline each file’s text as `content`; binary files are refused.'),
  max_content_bytes: z
    .int()
    .positive()
    .max(512 * 1024)
    .default(64 * 1024)
    .describe('With include_content: inline at most this many bytes of text; longer files are cut and marked content_truncated.'),
});
type FileConfig = z.infer<typeof config>;

function hasParentSegment(pattern: string): boolean {
  return pattern.replace(/\\/g, '/').split('/').includes('..');
}

function escapes(pattern: string): boolean {
  return isAbsolute(pattern) || hasParentSegment(pattern);
}

// One exclude pattern, read as a .gitignore line, as fast-glob ignore globs. fast-glob
// anchors every glob at base_directory and matches files only, so a pattern that may
// match at any depth gets a leading "**/", and a folder it matches is spelled out as
// everything under it: "*.md" becomes "**/*.md" and "**/*.md/**". A folder-only pattern
// ("build/") must not match a file of that name, and "build/**" would (its "**" may be
// empty), so it becomes "**/build/**/*": something under the folder.
export function excludeGlobs(pattern: string): string[] {
  const where = `enumerator_config.exclude_patterns: ${JSON.stringify(pattern)}`;
  if (pattern.startsWith('!')) {
    throw new AbpError('invalid_input', `${where}: a "!" pattern (bringing files back) is not supported; narrow enumerator_config.pattern instead`);
  }
  const foldersOnly = pattern.endsWith('/');
  const body = foldersOnly ? pattern.slice(0, -1) : pattern;
  // As in .gitignore, a slash at the start or in the middle anchors the pattern; the trailing one does not.
  const anchored = body.includes('/');
  const path = body.startsWith('/') ? body.slice(1) : body;
  if (path === '' || path.endsWith('/')) throw new AbpError('invalid_input', `${where} names no file or folder`);
  const glob = anchored ? path : `**/${path}`;
  return foldersOnly ? [`${glob}/**/*`] : [glob, `${glob}/**`];
}

function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * A folder or file the walk could not read (permissions, a link loop, a file gone
 * meanwhile), as an error that names it relative to base_directory and says what to do.
 */
function unreadable(err: unknown, base: string, relativePath?: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof AbpError || typeof e?.code !== 'string') return err;
  const where = relativePath ?? (typeof e.path === 'string' && inside(base, e.path) ? e.path.slice(base.length + 1) || '.' : (e.path ?? base));
  const why =
    e.code === 'EACCES' || e.code === 'EPERM'
      ? 'permission denied'
      : e.code === 'ELOOP'
        ? 'too many levels of symbolic links (a link that loops)'
        : e.code === 'ENOENT'
          ? 'it disappeared while the folder was read'
          : e.message;
  return new AbpError(
    'enumeration_failed',
    `enumerator_config.base_directory: cannot read ${where} under ${base}: ${why}; leave it out with exclude_patterns, or fix its permissions; no job was created`,
    { cause: err },
  );
}

/** Reads up to `cap` bytes; refuses binary (a NUL byte, or bytes that are not UTF-8). */
async function readText(path: string, relativePath: string, size: number, cap: number): Promise<{ content: string; truncated: boolean }> {
  const handle = await open(path, 'r');
  try {
    const want = Math.min(size, cap);
    const buf = Buffer.alloc(want);
    const { bytesRead } = await handle.read(buf, 0, want, 0);
    let text = buf.subarray(0, bytesRead);
    const truncated = size > bytesRead;
    // A cut can split a multi-byte character: drop its first bytes rather than call the file binary.
    if (truncated) {
      let end = text.length;
      while (end > 0 && end > text.length - 4 && ((text[end - 1] as number) & 0xc0) === 0x80) end--;
      if (end > 0 && (text[end - 1] as number) >= 0xc0) end--;
      if (isUtf8(text.subarray(0, end))) text = text.subarray(0, end);
    }
    if (text.includes(0) || !isUtf8(text)) {
      throw new AbpError(
        'invalid_input',
        `enumerator_config.include_content: ${relativePath} is a binary file (not UTF-8 text); leave it out with exclude_patterns, or turn include_content off`,
      );
    }
    return { content: text.toString('utf8'), truncated };
  } finally {
    await handle.close();
  }
}

/** As the original ABP gave it: lowercased, with its dot (`.jpg`); '' for none, and for a name ending in a bare dot. */
function fileExtension(path: string): string {
  const ext = extname(path).toLowerCase();
  return ext === '.' ? '' : ext;
}

export const fileEnumerator: Enumerator<FileConfig> = {
  type: 'file',
  description: 'One item per file matching a glob under base_directory, sorted by path: file_path, relative_path, file_name, file_extension (lowercase, with its dot: ".jpg"), file_size, mtime (and content).',
  promptTemplate: 'file',
  configSchema: config,
  async *enumerate(cfg, ctx) {
    const base = resolve(cfg.base_directory);
    await requireDirectory('enumerator_config.base_directory', base);
    const realBase = realpathSync.native(base);
    const patterns = Array.isArray(cfg.pattern) ? cfg.pattern : [cfg.pattern];
    const leaves = (field: string, p: string) =>
      new AbpError('invalid_input', `enumerator_config.${field}: ${JSON.stringify(p)} leaves base_directory; use a relative glob without ".."`);
    for (const p of patterns) if (escapes(p)) throw leaves('pattern', p);
    // An exclude pattern may start with "/": that anchors it at base_directory, as in .gitignore.
    for (const p of cfg.exclude_patterns) if (hasParentSegment(p)) throw leaves('exclude_patterns', p);
    const excluded = cfg.exclude_patterns.flatMap(excludeGlobs);
    // Without include_hidden, a hidden directory hides everything under it, even
    // when a pattern names it explicitly.
    const ignore = cfg.include_hidden ? excluded : [...excluded, '**/.*', '**/.*/**'];
    const { default: fg } = await import('fast-glob');
    // One synchronous walk (readdir with file types), then one lstat per file. The
    // asynchronous walk and three awaited fs calls a file (realpath, lstat, stat) spent
    // most of their time idle, waiting on libuv's thread pool: ~175 µs a file in all.
    let paths: string[];
    try {
      paths = fg.sync(patterns, {
        cwd: base,
        onlyFiles: true,
        dot: cfg.include_hidden,
        ignore,
        followSymbolicLinks: cfg.follow_symlinks,
        // Only several patterns, or one with braces ("{**/*.ts,src/*.ts}"), can match a file
        // twice; the check costs a lookup per file.
        unique: patterns.length > 1 || patterns[0]?.includes('{') === true,
        suppressErrors: false,
      });
    } catch (err) {
      throw unreadable(err, base);
    }
    if (paths.length === 0) {
      throw new AbpError('enumeration_failed', `enumerator_config.pattern: ${patterns.join(', ')} matched no files under ${base}; no job was created`);
    }
    paths.sort();
    // fast-glob gives paths with "/"; on a system that separates with "/" too, a path needs no normalising.
    const under = (root: string, relativePath: string) => (sep === '/' ? `${root}/${relativePath}` : join(root, relativePath));
    // The real path of each folder a file sits in, resolved once per folder from its
    // parent's and its own lstat: with the file's own lstat, it says where the file
    // really is without a realpath per file or per folder. (A static pattern goes
    // through a linked folder even without follow_symlinks, so every folder is looked at.)
    const realDirs = new Map<string, string>([['', realBase]]);
    const realDir = (dir: string): string => {
      let real = realDirs.get(dir);
      if (real === undefined) {
        const slash = dir.lastIndexOf('/');
        const path = under(base, dir);
        real = lstatSync(path).isSymbolicLink() ? realpathSync.native(path) : under(realDir(slash < 0 ? '' : dir.slice(0, slash)), dir.slice(slash + 1));
        realDirs.set(dir, real);
      }
      return real;
    };
    let emitted = 0;
    for (const relativePath of paths) {
      if (ctx.signal.aborted) throw new AbpError('enumeration_failed', 'file enumeration was cancelled');
      if (cfg.limit !== undefined && emitted >= cfg.limit) break;
      const file_path = under(base, relativePath);
      let info: Stats;
      let link: boolean;
      let real: string;
      try {
        info = lstatSync(file_path);
        // Resolve every link on the way, including linked directories the walk went into.
        link = info.isSymbolicLink();
        const slash = relativePath.lastIndexOf('/');
        real = link ? realpathSync.native(file_path) : under(realDir(slash < 0 ? '' : relativePath.slice(0, slash)), relativePath.slice(slash + 1));
        if (link && cfg.follow_symlinks && inside(realBase, real)) info = statSync(file_path);
      } catch (err) {
        throw unreadable(err, base, relativePath);
      }
      if (!inside(realBase, real)) {
        throw new AbpError(
          'invalid_input',
          `enumerator_config.follow_symlinks: ${relativePath} is a symbolic link that leads outside base_directory (to ${real}); it is never followed. Leave it out with exclude_patterns`,
        );
      }
      if (link && !cfg.follow_symlinks) {
        ctx.onSkip?.({ item: relativePath, reason: 'a symbolic link (follow_symlinks is off)' });
        continue;
      }
      if (cfg.max_file_size !== undefined && info.size > cfg.max_file_size) {
        ctx.onSkip?.({ item: relativePath, reason: `${info.size} bytes is over max_file_size (${cfg.max_file_size})` });
        continue;
      }
      const item: Item = {
        file_path,
        relative_path: relativePath,
        file_name: relativePath.slice(relativePath.lastIndexOf('/') + 1),
        file_extension: fileExtension(relativePath),
        file_size: info.size,
        mtime: isoTime(info.mtimeMs),
        _id: relativePath,
      };
      if (cfg.include_content) {
        const { content, truncated } = await readText(file_path, relativePath, info.size, cfg.max_content_bytes);
        item.content = content;
        item.content_truncated = truncated;
      }
      emitted++;
      yield item;
    }
    if (emitted === 0) {
      throw new AbpError('enumeration_failed', `enumerator_config: every file matching ${patterns.join(', ')} under ${base} was left out (see max_file_size, follow_symlinks); no job was created`);
    }
  },
};

