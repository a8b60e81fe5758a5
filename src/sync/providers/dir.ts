import { hash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile, rename, rmdir } from 'node:fs/promises';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import type { z } from 'zod';
import type { Checkpoint, Provider, ProviderFactory, ProviderItem, ProviderRecord, SideRead, SnapshotEntry, WriteOutcome } from '../../contracts/provider.js';
import { errorMessage } from '../../domain/errors.js';
import type { DirProviderConfig } from '../../domain/sync-pair.js';
import { down, ok, snapshotFailed } from './records.js';
import { settledMtime } from './stamps.js';

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

/** A folder's checkpoint: each file's [size, mtime ms]; a size of -1 marks a stamp too recent to trust (read again). */
type FileStamps = Record<string, [number, number]>;

function stampsOf(since: Checkpoint | null): FileStamps | null {
  const files = since?.files;
  return files !== null && typeof files === 'object' && !Array.isArray(files) ? (files as FileStamps) : null;
}

/** The files under a folder: key = the path relative to it (with /), hash = sha256 of the bytes, updated_at = mtime. */
export const dirProvider: ProviderFactory<Config> = {
  type: 'dir',
  description: 'The files under a folder; key = relative path, hash = content sha256.',
  open(cfg): Provider {
    const root = resolve(cfg.path);
    const wanted = (name: string) => !cfg.extensions || cfg.extensions.some((e) => name.endsWith(e));
    /** Whether a snapshot lists a file of this name. */
    const shown = (name: string) => wanted(name) && !name.endsWith('.tmp');
    const write = async (items: readonly ProviderItem[]): Promise<WriteOutcome[]> => {
      const out: WriteOutcome[] = [];
      for (const item of items) {
        const file = inside(root, item.key);
        if (!file) {
          out.push({ key: item.key, status: 'unresolved', reason: 'the key leaves the folder' });
          continue;
        }
        try {
          const bytes = bytesOf(item.data);
          await mkdir(dirname(file), { recursive: true });
          const tmp = `${file}.abp-${process.pid}.tmp`;
          await writeFile(tmp, bytes);
          await rename(tmp, file);
          // Read back: the file as a snapshot reads it, and whether the snapshot's filters show it at all.
          const stored = await readFile(file);
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
      /**
       * The checkpoint is each file's size and mtime, taken before it is read: a file whose
       * stamp is the same is not read (its hash is the baseline's), any other is read and
       * hashed, and a file the checkpoint lists that is gone is removed.
       */
      async readSince(since, signal): Promise<SideRead> {
        const before = stampsOf(since);
        const now = Date.now();
        const files: FileStamps = {};
        const changed = new Map<string, SnapshotEntry>();
        let count = 0;
        try {
          // Keys and paths are built by concatenation: path.join and path.relative per file were a
          // good part of a walk over a large folder that reads almost nothing.
          const walk = async (dir: string, prefix: string): Promise<void> => {
            for (const entry of await readdir(dir, { withFileTypes: true })) {
              signal.throwIfAborted();
              const full = `${dir}${sep}${entry.name}`;
              if (entry.isDirectory()) await walk(full, `${prefix}${entry.name}/`);
              else if (entry.isFile() && shown(entry.name)) {
                const key = `${prefix}${entry.name}`;
                const info = statSync(full);
                count++;
                const prev = before?.[key];
                if (prev && prev[0] === info.size && prev[1] === info.mtimeMs) {
                  files[key] = prev;
                  continue;
                }
                files[key] = settledMtime(info.mtimeMs, now) ? [info.size, info.mtimeMs] : [-1, info.mtimeMs];
                changed.set(key, { hash: hash('sha256', await readFile(full)), updated_at: Math.floor(info.mtimeMs) });
              }
            }
          };
          await walk(root, '');
        } catch (err) {
          throw snapshotFailed(`dir ${root}`, err);
        }
        const checkpoint = { files };
        if (!before) return { kind: 'full', snapshot: changed, checkpoint, why: since ? 'the checkpoint lists no files' : 'no checkpoint' };
        const removed = Object.keys(before).filter((key) => !(key in files));
        return { kind: 'delta', changed, removed, items: count, checkpoint, note: `${changed.size} of ${count} files read` };
      },
      async read(keys) {
        const out = new Map<string, ProviderRecord>();
        for (const key of keys) {
          const file = inside(root, key);
          if (!file) continue;
          try {
            out.set(key, toItem(key, await readFile(file)));
          } catch {
            // Gone since the plan: the caller reports it as skipped.
          }
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
          if (!existsSync(file)) {
            out.push({ key, status: 'skipped', reason: 'not present' });
            continue;
          }
          try {
            await rm(file);
            // Leave no empty folders behind, up to the root.
            for (let d = dirname(file); d !== root && d.startsWith(root); d = dirname(d)) await rmdir(d).catch(() => undefined);
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
