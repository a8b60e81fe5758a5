import { lstat, mkdir, readlink, rename, unlink } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { AbpError, errorMessage } from '../domain/errors.js';
import { openExclusiveTemp } from '../util/confined-write.js';
import type { Job, Lines, SinkReport } from './sink.js';

/** Lines are handed to the file in chunks of about this many bytes. */
const CHUNK = 1 << 16;

/**
 * Every unit's result line, written to a new temporary file beside the target
 * (a random name, opened O_EXCL|O_NOFOLLOW, so nothing planted there can catch
 * the write) and renamed over the target: a re-run replaces it whole. A target
 * that is a symbolic link is refused rather than replaced: the rename would put
 * a plain file where the link was and leave the link's target as it was, which
 * is not what whoever made the link meant.
 */
export async function writeJsonl(path: string, _job: Job, lines: Lines): Promise<SinkReport> {
  const target = resolve(path);
  const dir = dirname(target);
  const existing = await lstat(target).catch(() => undefined);
  if (existing?.isSymbolicLink()) {
    const to = await readlink(target).catch(() => '?');
    throw new AbpError('invalid_input', `sink jsonl: ${target} is a symbolic link (to ${to}); abp replaces the file whole and never writes through a link: give the file itself as the path`);
  }
  if (existing && !existing.isFile()) throw new AbpError('invalid_input', `sink jsonl: ${target} is ${existing.isDirectory() ? 'a folder' : 'not a regular file'}; give a file path`);
  let temp: Awaited<ReturnType<typeof openExclusiveTemp>>;
  try {
    await mkdir(dir, { recursive: true });
    temp = await openExclusiveTemp(dir, basename(target));
  } catch (err) {
    throw new AbpError('invalid_input', `sink jsonl: cannot write beside ${target}: ${errorMessage(err)}`);
  }
  let written = 0;
  let renamed = false;
  try {
    try {
      let chunk = '';
      for await (const line of lines()) {
        chunk += `${JSON.stringify(line)}\n`;
        written++;
        if (chunk.length >= CHUNK) {
          await temp.handle.appendFile(chunk);
          chunk = '';
        }
      }
      if (chunk) await temp.handle.appendFile(chunk);
    } finally {
      await temp.handle.close();
    }
    await rename(temp.path, target);
    renamed = true;
  } finally {
    if (!renamed) await unlink(temp.path).catch(() => undefined);
  }
  return { sink: 'jsonl', target, written, unchanged: 0, skipped: 0, failed: 0, failures: [] };
}
