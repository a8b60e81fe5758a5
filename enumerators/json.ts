import { readFile, stat } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import type { Enumerator, Item } from '../src/contracts/enumerator.js';
import { AbpError, errorMessage } from '../src/domain/errors.js';
import { decodeText, encodingField, textStream } from './encoding.js';
import { requireFile } from './fs-checks.js';
import { jsonErrorOffset, lineColumn, shortJsonMessage } from './json-position.js';

const config = z.strictObject({
  file_path: z.string().min(1).describe('A JSON file, or a JSON Lines file (.jsonl, .ndjson: one item per line, streamed).'),
  format: z
    .enum(['auto', 'json', 'jsonl'])
    .default('auto')
    .describe('auto: .jsonl and .ndjson are JSON Lines, anything else is one JSON document.'),
  items_path: z
    .string()
    .optional()
    .describe('Where the array of items is in a JSON file: a JSON Pointer ("/data/items") or a dot path ("data.items"); default: the root array.'),
  id_field: z.string().min(1).optional().describe('The field of each item that identifies it; default: its position.'),
  encoding: encodingField,
  limit: z.int().positive().optional().describe('Stop after this many items.'),
  max_file_bytes: z
    .int()
    .positive()
    .max(512 * 1024 * 1024)
    .default(64 * 1024 * 1024)
    .describe('A JSON (not JSON Lines) file is read whole, so it may be at most this big; use JSON Lines for more.'),
});
type JsonConfig = z.infer<typeof config>;

/** Path segments from a JSON Pointer (RFC 6901) or a dot path. */
export function pathSegments(path: string): string[] {
  if (path === '' || path === '/' || path === '.' || path === '$') return [];
  if (path.startsWith('/')) return path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  return path.replace(/^\$?\./, '').split('.');
}

function kind(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function at(root: unknown, path: string): unknown {
  const where = `enumerator_config.items_path: ${JSON.stringify(path)}`;
  let node = root;
  const walked: string[] = [];
  for (const seg of pathSegments(path)) {
    const here = walked.length ? walked.join('.') : 'the top level';
    if (Array.isArray(node)) {
      const index = /^\d+$/.test(seg) ? Number(seg) : NaN;
      if (!(index < node.length)) throw new AbpError('invalid_input', `${where} not found: ${here} is an array of ${node.length} with no index ${JSON.stringify(seg)}`);
      node = node[index];
    } else if (node !== null && typeof node === 'object') {
      if (!Object.hasOwn(node, seg)) {
        const keys = Object.keys(node).slice(0, 20).join(', ');
        throw new AbpError('invalid_input', `${where} not found: ${here} has no ${JSON.stringify(seg)} (keys: ${keys || 'none'})`);
      }
      node = (node as Record<string, unknown>)[seg];
    } else {
      throw new AbpError('invalid_input', `${where} not found: ${here} is ${kind(node)}, which has no ${JSON.stringify(seg)}`);
    }
    walked.push(seg);
  }
  return node;
}

/**
 * How deep an item may nest. JSON.parse takes any depth, but storing, rendering and
 * serving an item recurse once per level and run out of stack near 5,000.
 */
const MAX_DEPTH = 1000;

/** Whether arrays and objects in `value` nest more than `limit` deep; a loop, so any depth is safe to ask about. */
function nestsDeeper(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [node, depth] = next;
    if (node === null || typeof node !== 'object') continue;
    if (depth >= limit) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

/** Text shorter than two characters per level cannot nest that deep, so most items skip the walk. */
function assertShallow(value: unknown, textLength: number, where: string, details: Record<string, unknown>): void {
  if (textLength > 2 * MAX_DEPTH && nestsDeeper(value, MAX_DEPTH)) {
    throw new AbpError('enumeration_failed', `${where}: nested more than ${MAX_DEPTH} levels deep; an item must be flatter than that to be stored and rendered`, { details });
  }
}

function toItem(value: unknown, index: number, idField: string | undefined, where: string): Item {
  const item: Item = value !== null && typeof value === 'object' && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : { value };
  let id: string | number = index;
  if (idField !== undefined) {
    const raw = Object.hasOwn(item, idField) ? item[idField] : undefined;
    if (typeof raw !== 'string' && typeof raw !== 'number') {
      throw new AbpError('invalid_input', `enumerator_config.id_field: ${where} has no string or number ${JSON.stringify(idField)} (got ${raw === undefined ? 'nothing' : kind(raw)})`);
    }
    id = raw;
  }
  item._index = index;
  item._id = id;
  return item;
}

function isJsonLines(cfg: JsonConfig, path: string): boolean {
  if (cfg.format !== 'auto') return cfg.format === 'jsonl';
  return ['.jsonl', '.ndjson'].includes(extname(path).toLowerCase());
}

async function* jsonLines(path: string, cfg: JsonConfig, signal: AbortSignal): AsyncGenerator<Item> {
  if (cfg.items_path !== undefined) {
    throw new AbpError('invalid_input', 'enumerator_config.items_path: applies to a JSON file; in JSON Lines every line is an item');
  }
  const { text, close } = textStream(path, cfg.encoding, `json ${path}:`, signal);
  // readline pulls from the stream as we consume, so a 1 GB file is never held whole.
  const lines = createInterface({ input: text, crlfDelay: Infinity });
  let lineNo = 0;
  let index = 0;
  try {
    for await (const raw of lines) {
      lineNo++;
      const line = lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (line.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        const offset = jsonErrorOffset(line);
        const column = offset >= 0 ? ` column ${offset + 1}` : '';
        throw new AbpError('enumeration_failed', `json ${path}: line ${lineNo}${column}: not valid JSON: ${shortJsonMessage(errorMessage(err))}`, {
          details: { line: lineNo },
        });
      }
      assertShallow(value, line.length, `json ${path}: line ${lineNo}`, { line: lineNo });
      yield toItem(value, index, cfg.id_field, `line ${lineNo}`);
      index++;
      if (cfg.limit !== undefined && index >= cfg.limit) break;
    }
  } finally {
    lines.close();
    close();
  }
}

async function* jsonDocument(path: string, cfg: JsonConfig): AsyncGenerator<Item> {
  const { size } = await stat(path);
  if (size > cfg.max_file_bytes) {
    throw new AbpError(
      'invalid_input',
      `enumerator_config.file_path: ${path} is ${size} bytes, over max_file_bytes (${cfg.max_file_bytes}); a JSON file is read whole, so convert it to JSON Lines (.jsonl: one item per line), which is streamed`,
    );
  }
  const text = decodeText(await readFile(path), cfg.encoding, `json ${path}:`);
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (err) {
    const offset = jsonErrorOffset(text);
    const position = offset >= 0 ? offset : text.length;
    const { line, column } = lineColumn(text, position);
    throw new AbpError('enumeration_failed', `json ${path}: line ${line} column ${column} (position ${position}): not valid JSON: ${shortJsonMessage(errorMessage(err))}`, {
      details: { line, column, position },
    });
  }
  const items = cfg.items_path === undefined ? root : at(root, cfg.items_path);
  if (!Array.isArray(items)) {
    const keys = items !== null && typeof items === 'object' ? ` (keys: ${Object.keys(items).slice(0, 20).join(', ')})` : '';
    const where = cfg.items_path === undefined ? 'the top level' : JSON.stringify(cfg.items_path);
    throw new AbpError('invalid_input', `enumerator_config.items_path: ${where} of ${path} is ${kind(items)}, not an array of items${keys}`);
  }
  const end = cfg.limit === undefined ? items.length : Math.min(cfg.limit, items.length);
  for (let i = 0; i < end; i++) {
    assertShallow(items[i], text.length, `json ${path}: item ${i}`, { item: i });
    yield toItem(items[i], i, cfg.id_field, `item ${i}`);
  }
}

export const jsonEnumerator: Enumerator<JsonConfig> = {
  type: 'json',
  description: 'One item per element of a JSON array (at items_path), or per line of a JSON Lines file (streamed). Items carry _index (0-based) and _id; a scalar becomes {value}.',
  promptTemplate: 'generic',
  configSchema: config,
  async *enumerate(cfg, ctx) {
    const path = resolve(cfg.file_path);
    await requireFile('enumerator_config.file_path', path);
    yield* isJsonLines(cfg, path) ? jsonLines(path, cfg, ctx.signal) : jsonDocument(path, cfg);
  },
};
