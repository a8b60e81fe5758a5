import { createHash } from 'node:crypto';
import { mkdir, realpath, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { AbpError, errorMessage } from '../domain/errors.js';
import { ConfinedWriteError, writeConfined } from '../util/confined-write.js';
import { MAX_LISTED_FAILURES, shownItemId, type Job, type Lines, type SinkFailure, type SinkReport } from './sink.js';

/*
 * File names from item ids. Distinct items never share a file:
 *
 * - An id made only of safe segments ([A-Za-z0-9_-] then [A-Za-z0-9._-]*, each at
 *   most 200 bytes, folders not ending in .json or .txt, 1,024 bytes in all) is
 *   its own name: `b/2` → `b/2.json`. Such a name never holds a "~".
 * - Any other id is shortened and made safe for reading, and its last segment
 *   ends in "~" and 16 hex digits of the id's sha256: `a b` → `a_b~3f1c….txt`,
 *   `x/..` → `x/_~….txt`, a 300-character id → its first 183 characters and the
 *   hash. A folder segment that had to change ends in its own "~hash".
 * - Folders never end in .json or .txt, and files always do, so one item's file
 *   is never another's folder (`a` → a.txt and `a.txt/b` → a.txt~…/b.txt).
 * - Names are taken in unit order, case-folded (so they stay apart on macOS and
 *   Windows too): a name already taken in this run goes to its hashed form, and a
 *   second unit of the same item adds its unit id (`x~….txt`, `x~…-u7.txt`).
 *   Units that are not written take their names too, so a name does not move
 *   when another unit later succeeds.
 */

const SAFE_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
/** Bytes of one path segment: file systems allow 255; this leaves room for the temporary file and the extension. */
const MAX_SEGMENT = 200;
/** Bytes of the whole name under the folder; a deeper id is written flat. */
const MAX_RELATIVE = 1024;
const HASH_CHARS = 16;
const FILE_EXTENSION = /\.(json|txt)$/i;

const hashOf = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, HASH_CHARS);

function sanitise(segment: string): string {
  return segment.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '_');
}

/** The id itself, when it is a safe relative name. */
function exactStem(itemId: string): string | undefined {
  if (itemId.length > MAX_RELATIVE) return undefined;
  const parts = itemId.split('/');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (!SAFE_SEGMENT.test(part) || part.length > MAX_SEGMENT) return undefined;
    if (i < parts.length - 1 && FILE_EXTENSION.test(part)) return undefined;
  }
  return itemId;
}

/** A readable, safe name for any id, ending in the id's hash (and `suffix`). */
function hashedStem(itemId: string, suffix = ''): string {
  const tail = `~${hashOf(itemId)}${suffix}`;
  const raw = itemId.split(/[\\/]+/).filter(Boolean);
  const leafRaw = raw.pop() ?? '';
  const dirs = raw.map((s) => {
    const safe = sanitise(s);
    return safe === s && safe.length <= MAX_SEGMENT && !FILE_EXTENSION.test(safe) ? safe : `${safe.slice(0, MAX_SEGMENT - HASH_CHARS - 1)}~${hashOf(s)}`;
  });
  const leaf = `${(sanitise(leafRaw) || 'item').slice(0, MAX_SEGMENT - tail.length)}${tail}`;
  const stem = [...dirs, leaf].join('/');
  if (stem.length <= MAX_RELATIVE) return stem;
  // Too deep to keep the folders: one file at the top, named from the whole id.
  return `${sanitise(raw.concat(leafRaw).join('_')).slice(0, MAX_SEGMENT - tail.length)}${tail}`;
}

/** The name (without extension) a unit's file gets in a run, given the names taken before it. */
export function claimStem(itemId: string, unitId: number, taken: Set<string>): string {
  const candidates = [exactStem(itemId), hashedStem(itemId), hashedStem(itemId, `-u${unitId}`)];
  for (const stem of candidates) {
    if (stem === undefined) continue;
    const key = stem.toLowerCase();
    if (taken.has(key)) continue;
    taken.add(key);
    return stem;
  }
  // Unit ids are unique within a job, so the last candidate is free unless a hash collided with it.
  throw new ConfinedWriteError(`no free name: ${candidates.at(-1)} is taken`);
}

/** One file per succeeded unit: the structured output as JSON when there is one, else the text output. */
export async function writeDir(path: string, _job: Job, lines: Lines): Promise<SinkReport> {
  const given = resolve(path);
  let root: string;
  try {
    await mkdir(given, { recursive: true });
    root = await realpath(given);
    if (!(await stat(root)).isDirectory()) throw new Error('not a folder');
  } catch (err) {
    throw new AbpError('invalid_input', `sink dir: ${given} cannot be used as the folder: ${errorMessage(err)}`);
  }
  let written = 0;
  let unchanged = 0;
  let skipped = 0;
  let failed = 0;
  const failures: SinkFailure[] = [];
  const fail = (unitId: number, itemId: string, reason: string) => {
    failed++;
    if (failures.length < MAX_LISTED_FAILURES) failures.push({ unit_id: unitId, item_id: shownItemId(itemId), reason });
  };
  const taken = new Set<string>();
  for await (const line of lines()) {
    let stem: string | undefined;
    let problem: string | undefined;
    try {
      stem = claimStem(line.item_id, line.unit_id, taken);
    } catch (err) {
      problem = errorMessage(err);
    }
    if (line.status !== 'SUCCEEDED') {
      skipped++;
      continue;
    }
    if (stem === undefined) {
      fail(line.unit_id, line.item_id, problem ?? 'no name');
      continue;
    }
    const structured = line.structured_output !== null && line.structured_output !== undefined;
    const name = `${stem}.${structured ? 'json' : 'txt'}`;
    const content = structured ? `${JSON.stringify(line.structured_output, null, 2)}\n` : (line.output ?? '');
    try {
      if ((await writeConfined(root, name, content)) === 'written') written++;
      else unchanged++;
    } catch (err) {
      fail(line.unit_id, line.item_id, err instanceof ConfinedWriteError ? err.message : `${name}: ${errorMessage(err)}`);
    }
  }
  return { sink: 'dir', target: given, written, unchanged, skipped, failed, failures };
}
