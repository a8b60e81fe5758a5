import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, rename, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/*
 * Writing a file inside a folder whose contents someone else may also write (an
 * agent's workspace, a shared results folder), so that no link planted inside
 * the folder can carry the write outside it. The boundary is the filesystem's,
 * not the path text's: Node has no openat/mkdirat/renameat, so each directory
 * component is checked with lstat as the walk reaches it, links are never
 * followed, and the file itself is never opened by its final name.
 *
 * 1. Walk the components under the root one by one: lstat each; a missing one is
 *    made with a plain (non-recursive) mkdir and lstat'ed again; a link, or
 *    anything that is not a folder, ends the write with a reason.
 * 2. Create a temporary file with a random name in the last folder, opened with
 *    O_CREAT|O_EXCL|O_NOFOLLOW: it is new, and never a link or someone's file.
 * 3. Before the rename, lstat the chain again and check each component is the
 *    same folder (device and inode) the walk saw, and that the temporary file
 *    is the one written (its inode).
 * 4. rename() it over the final name: rename replaces a link (or any file) at
 *    the name itself and never writes through it.
 *
 * What remains: between step 3 and the rename (microseconds), a process that can
 * write inside the folder could swap a component for a link, and the rename would
 * follow it. Closing that needs renameat on directory descriptors, which Node
 * does not offer.
 */

/** A write that could not happen, with a reason for people. */
export class ConfinedWriteError extends Error {
  override name = 'ConfinedWriteError';
}

export type ConfinedOutcome = 'written' | 'unchanged';

interface Seen {
  path: string;
  dev: number;
  ino: number;
}

const errnoOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function describe(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFile()) return 'a file';
  if (st.isDirectory()) return 'a folder';
  return 'not a regular file';
}

/**
 * Step 1: the folders from root down to `dirs`, each lstat'ed, made when missing
 * (undefined instead when `create` is false), never a link.
 */
async function walk(root: string, dirs: readonly string[], create: false): Promise<Seen[] | undefined>;
async function walk(root: string, dirs: readonly string[], create?: true): Promise<Seen[]>;
async function walk(root: string, dirs: readonly string[], create = true): Promise<Seen[] | undefined> {
  const rootStat = await lstat(root);
  const chain: Seen[] = [{ path: root, dev: rootStat.dev, ino: rootStat.ino }];
  let here = root;
  const shown: string[] = [];
  for (const name of dirs) {
    here = join(here, name);
    shown.push(name);
    let st = await lstatOrUndefined(here);
    if (!st && !create) return undefined;
    if (!st) {
      await mkdir(here).catch((err: unknown) => {
        if (errnoOf(err) !== 'EEXIST') throw err;
      });
      st = await lstat(here);
    }
    if (st.isSymbolicLink()) throw new ConfinedWriteError(`${shown.join('/')} is a symbolic link; links inside the folder are never followed`);
    if (!st.isDirectory()) throw new ConfinedWriteError(`${shown.join('/')} is ${describe(st)}, not a folder`);
    chain.push({ path: here, dev: st.dev, ino: st.ino });
  }
  return chain;
}

/** Step 3: every folder on the way is still the one the walk checked. */
async function recheck(chain: readonly Seen[], root: string): Promise<void> {
  for (const seen of chain) {
    const st = await lstatOrUndefined(seen.path);
    if (!st || st.isSymbolicLink() || !st.isDirectory() || st.dev !== seen.dev || st.ino !== seen.ino) {
      const rel = seen.path === root ? 'the folder' : seen.path.slice(root.length + 1);
      throw new ConfinedWriteError(`${rel} was replaced while the file was being written; nothing was written`);
    }
  }
}

/**
 * Opens `path` for reading when it is a regular file, never through a link at
 * the name; undefined otherwise. O_NONBLOCK: a FIFO planted at the name must not
 * stall the caller. The caller closes the handle.
 */
async function openRegularFile(path: string): Promise<FileHandle | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  if ((await handle.stat()).isFile()) return handle;
  await handle.close();
  return undefined;
}

/** True when `path` is a regular file (not followed if a link) holding exactly `bytes`. */
async function holds(path: string, bytes: Buffer): Promise<boolean> {
  const handle = await openRegularFile(path);
  if (!handle) return false;
  try {
    if ((await handle.stat()).size !== bytes.length) return false;
    const have = Buffer.alloc(bytes.length);
    let read = 0;
    while (read < have.length) {
      const { bytesRead } = await handle.read(have, read, have.length - read, read);
      if (bytesRead === 0) return false;
      read += bytesRead;
    }
    return have.equals(bytes);
  } finally {
    await handle.close();
  }
}

/**
 * A temporary file's path in `dir` that nobody can guess, named after `hint`:
 * a leading dot keeps it apart from item names. Opened exclusively
 * (O_EXCL | O_NOFOLLOW) by every caller, so a name planted there is never reused.
 */
export function tempPath(dir: string, hint: string): string {
  return join(dir, `.${hint.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64)}.${randomBytes(12).toString('hex')}.tmp`);
}

/**
 * Writes `content` to `rel` (segments separated by "/", none of them "", "." or
 * "..") under `root`, a folder the caller has already resolved. A file that
 * already holds exactly `content` is left alone ('unchanged'). Throws a
 * ConfinedWriteError with a reason when the write would leave the folder or
 * cannot happen; never leaves its temporary file behind.
 */
export async function writeConfined(root: string, rel: string, content: string | Buffer): Promise<ConfinedOutcome> {
  const { dirs, leaf } = segments(rel);
  const chain = await walk(root, dirs);
  const dir = chain[chain.length - 1]!.path;
  const target = join(dir, leaf);
  const existing = await lstatOrUndefined(target);
  if (existing?.isDirectory()) throw new ConfinedWriteError(`${rel} is a folder; the item's file cannot replace it`);
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  if (existing?.isFile() && (await holds(target, bytes))) return 'unchanged';

  // Step 2: a new file under a name nobody can guess.
  const temp = tempPath(dir, 'abp');
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666);
  let renamed = false;
  try {
    let ino: number;
    try {
      await handle.writeFile(bytes);
      ino = (await handle.stat()).ino;
    } finally {
      await handle.close();
    }
    await recheck(chain, root);
    const st = await lstatOrUndefined(temp);
    if (!st || !st.isFile() || st.ino !== ino) throw new ConfinedWriteError(`${rel}: the temporary file was replaced while it was written; nothing was written`);
    // Step 4: replaces whatever is at the name (a link included) without following it.
    await rename(temp, target);
    renamed = true;
    return 'written';
  } finally {
    if (!renamed) await unlink(temp).catch(() => undefined);
  }
}

/** Splits a relative path into its folders and its leaf, refusing empty, "." and ".." segments. */
function segments(rel: string): { dirs: string[]; leaf: string } {
  const parts = rel.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) throw new ConfinedWriteError(`${JSON.stringify(rel)} is not a relative path inside the folder`);
  const leaf = parts.pop()!;
  return { dirs: parts, leaf };
}

/**
 * Removes the file at `rel` under `root` the way writeConfined writes it: the
 * folders on the way are checked with lstat and never followed, a link at the
 * name is removed itself (not what it points to), and a folder is refused. Then
 * the folders the removal left empty are removed, up to (not including) the root.
 * 'absent' when there was nothing to remove.
 */
export async function removeConfined(root: string, rel: string): Promise<'removed' | 'absent'> {
  const { dirs, leaf } = segments(rel);
  const chain = await walk(root, dirs, false);
  if (!chain) return 'absent';
  const target = join(chain[chain.length - 1]!.path, leaf);
  const st = await lstatOrUndefined(target);
  if (!st) return 'absent';
  if (st.isDirectory()) throw new ConfinedWriteError(`${rel} is a folder, not a file; it was left in place`);
  await recheck(chain, root);
  await unlink(target);
  for (let i = chain.length - 1; i > 0; i--) {
    try {
      await rmdir(chain[i]!.path);
    } catch {
      break; // not empty (or gone): the folders above it are not empty either
    }
  }
  return 'removed';
}

/**
 * Reads the regular file at `rel` under `root` without following a link on the
 * way or at the name; undefined when it is missing, a link or not a regular file.
 */
export async function readConfined(root: string, rel: string): Promise<Buffer | undefined> {
  const { dirs, leaf } = segments(rel);
  let chain: Seen[] | undefined;
  try {
    chain = await walk(root, dirs, false);
  } catch (err) {
    if (err instanceof ConfinedWriteError) return undefined;
    throw err;
  }
  if (!chain) return undefined;
  const handle = await openRegularFile(join(chain[chain.length - 1]!.path, leaf));
  if (!handle) return undefined;
  try {
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Opens a new file for writing under a random name beside `target`: exclusive, never through a link. */
export async function openExclusiveTemp(dir: string, hint: string): Promise<{ path: string; handle: Awaited<ReturnType<typeof open>> }> {
  const path = tempPath(dir, hint);
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666);
  return { path, handle };
}
