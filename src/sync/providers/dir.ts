import { hash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { basename, isAbsolute, relative, resolve } from 'node:path';
import type { z } from 'zod';
import type { Provider, ProviderFactory, ProviderItem, ProviderRecord, SideRead, WriteOutcome } from '../../contracts/provider.js';
import { errorMessage } from '../../domain/errors.js';
import { readConfined, removeConfined, writeConfined } from '../../util/confined-write.js';
import type { DirProviderConfig } from '../../domain/sync-pair.js';
import { FILE_HASH_CHARS, folderCheckpointOf, shownIn, walkFolder, type WalkEnd } from './folder-walk.js';
import { PackedSnapshot } from './packed-snapshot.js';
import { down, ok, snapshotFailed } from './records.js';
import { readInThread, threadScript } from './thread-read.js';

type Config = z.infer<typeof DirProviderConfig>;

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Text stays text (so a transform worker can read it); anything else travels as base64. */
function toItem(key: string, bytes: Buffer): ProviderRecord {
  try {
    return { key, content: decoder.decode(bytes), encoding: 'utf8' };
  } catch {
    return { key, content: bytes.toString('base64'), encoding: 'base64' };
  }
}

function bytesOf(data: ProviderRecord): Buffer {
  const content = typeof data.content === 'string' ? data.content : '';
  return data.encoding === 'base64' ? Buffer.from(content, 'base64') : Buffer.from(content, 'utf8');
}

/** A key must stay inside the folder: no absolute paths, no `..` segments. */
function inside(root: string, key: string): string | undefined {
  const full = resolve(root, key);
  const rel = relative(root, full);
  return rel === '' || rel.startsWith('..') || isAbsolute(rel) ? undefined : full;
}

/**
 * A folder whose checkpoint lists fewer files is walked inline; any other (or one
 * with no checkpoint, whose every file will be read) on a worker thread, so both
 * sides of a pair are walked at once and the event loop stays free. A thread
 * takes ~50 ms to start: more than 2,000 stats cost.
 */
export const THREAD_MIN_FILES = 2000;

/** The files under a folder: key = the path relative to it (with /), hash = sha256 of the bytes, updated_at = mtime. */
export const dirProvider: ProviderFactory<Config> = {
  type: 'dir',
  description: 'The files under a folder; key = relative path, hash = content sha256.',
  open(cfg): Provider {
    const root = resolve(cfg.path);
    const shown = shownIn(cfg.extensions);
    const write = async (items: readonly ProviderItem[]): Promise<WriteOutcome[]> => {
      const out: WriteOutcome[] = [];
      for (const item of items) {
        const file = inside(root, item.key);
        if (!file) {
          out.push({ key: item.key, status: 'unresolved', reason: 'the key leaves the folder' });
          continue;
        }
        try {
          // Confined by the filesystem: a link planted inside the folder is never followed (see confined-write.ts).
          await writeConfined(root, item.key, bytesOf(item.data));
          // Read back: the file as a snapshot reads it, and whether the snapshot's filters show it at all.
          const stored = await readConfined(root, item.key);
          if (stored === undefined) throw new Error(`${item.key} could not be read back`);
          out.push({ key: item.key, status: 'confirmed', hash: hash('sha256', stored), read_back: shown(basename(file)) });
        } catch (err) {
          out.push({ key: item.key, status: 'unresolved', reason: errorMessage(err) });
        }
      }
      return out;
    };
    return {
      type: 'dir',
      async health() {
        if (!existsSync(root)) return down(`${root} does not exist`);
        return statSync(root).isDirectory() ? ok(`${root} is a folder`) : down(`${root} is not a folder`);
      },
      async snapshot(signal) {
        const read = await this.readSince(null, signal);
        return read.kind === 'full' ? read.snapshot : read.changed;
      },
      /** Against the checkpoint (each file's size and mtime): see folder-walk.ts. */
      async readSince(since, signal): Promise<SideRead> {
        const saved = folderCheckpointOf(since);
        const stamps = saved?.stamps ?? null;
        const changed = new PackedSnapshot(FILE_HASH_CHARS);
        const now = Date.now();
        let end: WalkEnd;
        try {
          end =
            saved && saved.files < THREAD_MIN_FILES
              ? walkFolder(root, cfg.extensions, stamps, now, (b) => changed.add(b.keys, b.hashes, b.updated), () => signal.throwIfAborted())
              : await readInThread<WalkEnd>(threadScript('folder-walk-thread'), { root, extensions: cfg.extensions, stamps, now }, changed, signal);
        } catch (err) {
          throw snapshotFailed(`dir ${root}`, err);
        }
        if (!end.delta) return { kind: 'full', snapshot: changed, checkpoint: end.checkpoint, why: since ? 'the checkpoint is of another format' : 'no checkpoint' };
        return { kind: 'delta', changed, removed: end.removed, items: end.count, checkpoint: end.checkpoint, note: `${changed.size} of ${end.count} files read` };
      },
      async read(keys) {
        const out = new Map<string, ProviderRecord>();
        for (const key of keys) {
          const file = inside(root, key);
          if (!file) continue;
          // Gone since the plan (or a link now): the caller reports it as skipped.
          const bytes = await readConfined(root, key).catch(() => undefined);
          if (bytes !== undefined) out.set(key, toItem(key, bytes));
        }
        return out;
      },
      add: write,
      update: write,
      async remove(keys) {
        const out: WriteOutcome[] = [];
        for (const key of keys) {
          const file = inside(root, key);
          if (!file) {
            out.push({ key, status: 'unresolved', reason: 'the key leaves the folder' });
            continue;
          }
          try {
            // Leaves no empty folders behind, up to the root; never through a link.
            if ((await removeConfined(root, key)) === 'absent') {
              out.push({ key, status: 'skipped', reason: 'not present' });
              continue;
            }
            out.push({ key, status: 'confirmed', hash: '' });
          } catch (err) {
            out.push({ key, status: 'unresolved', reason: errorMessage(err) });
          }
        }
        return out;
      },
      async close() {},
    };
  },
};
