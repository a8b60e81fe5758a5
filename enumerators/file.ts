import { stat } from 'node:fs/promises';
import { basename, extname, isAbsolute, join, resolve } from 'node:path';
import fg from 'fast-glob';
import { z } from 'zod';
import type { Enumerator } from '../src/contracts/enumerator.js';
import { AbpError } from '../src/domain/errors.js';
import { requireDirectory } from './fs-checks.js';

const config = z.strictObject({
  base_directory: z.string().min(1).describe('The folder to search; no item ever lies outside it.'),
  pattern: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
    .default('**/*')
    .describe('A glob, or a list of globs, relative to base_directory.'),
  exclude_patterns: z.array(z.string().min(1)).default([]).describe('Globs to leave out.'),
  include_hidden: z.boolean().default(false).describe('Include dot-files and files inside dot-directories.'),
  limit: z.int().positive().optional().describe('Keep only the first N files, after a stable sort by path.'),
});
type FileConfig = z.infer<typeof config>;

function escapes(pattern: string): boolean {
  return isAbsolute(pattern) || pattern.split('/').includes('..');
}

export const fileEnumerator: Enumerator<FileConfig> = {
  type: 'file',
  description: 'One item per file matching a glob under base_directory, sorted by path.',
  promptTemplate: 'file',
  configSchema: config,
  async *enumerate(cfg) {
    const base = resolve(cfg.base_directory);
    await requireDirectory('enumerator_config.base_directory', base);
    const patterns = Array.isArray(cfg.pattern) ? cfg.pattern : [cfg.pattern];
    for (const p of [...patterns, ...cfg.exclude_patterns]) {
      if (escapes(p)) {
        throw new AbpError('invalid_input', `enumerator_config.pattern: ${JSON.stringify(p)} leaves base_directory; use a relative glob without ".."`);
      }
    }
    const paths = await fg(patterns, {
      cwd: base,
      onlyFiles: true,
      dot: cfg.include_hidden,
      ignore: cfg.exclude_patterns,
      followSymbolicLinks: false,
      unique: true,
    });
    if (paths.length === 0) {
      throw new AbpError('enumeration_failed', `enumerator_config.pattern: ${patterns.join(', ')} matched no files under ${base}`);
    }
    paths.sort();
    const chosen = cfg.limit === undefined ? paths : paths.slice(0, cfg.limit);
    for (const relative of chosen) {
      const file_path = join(base, relative);
      const info = await stat(file_path);
      yield {
        file_path,
        relative_path: relative,
        file_name: basename(relative),
        file_extension: extname(relative).replace(/^\./, ''),
        file_size: info.size,
        mtime: info.mtime.toISOString(),
        _id: relative,
      };
    }
  },
};
