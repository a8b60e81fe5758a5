/**
 * The worker thread behind a large file's snapshot (whole-file.ts): reads the
 * file, parses and hashes every record with the provider's own format, and posts
 * the entries in batches. Started with workerData { config }.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { resolve } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { ProviderRecord } from '../../contracts/provider.js';
import { AbpError, assertNever, errorMessage } from '../../domain/errors.js';
import { csvFormat } from './csv.js';
import { jsonFormat } from './json.js';
import { jsonlFormat } from './jsonl.js';
import { recordHash, updatedAtOf } from './records.js';
import { postFromThread, type ThreadReadMessage } from './thread-read.js';
import { updatedAtFieldOf, type FileProviderConfig, type RecordFileFormat } from './whole-file.js';

const BATCH = 20_000; // at most PACKED_BATCH_MAX (packed-snapshot.ts)

function formatOf(config: FileProviderConfig): RecordFileFormat {
  switch (config.type) {
    case 'jsonl':
      return jsonlFormat(config);
    case 'json':
      return jsonFormat(config);
    case 'csv':
      return csvFormat(config);
    default:
      return assertNever(config, 'file provider type');
  }
}

/** The file's text in pieces of whole lines (each ends with a newline, but perhaps the last). */
async function* wholeLines(path: string): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const text = rest + decoder.write(chunk as Buffer);
    const cut = text.lastIndexOf('\n') + 1;
    rest = text.slice(cut);
    if (cut > 0) yield text.slice(0, cut);
  }
  rest += decoder.end();
  if (rest !== '') yield rest;
}

const post = (message: ThreadReadMessage<true>): void => postFromThread(parentPort?.postMessage.bind(parentPort), message);

async function main(config: FileProviderConfig): Promise<void> {
  const path = resolve(config.path);
  const format = formatOf(config);
  const updatedAtField = updatedAtFieldOf(config);
  let keys: string[] = [];
  let hashes: string[] = [];
  let updated: number[] = [];
  const flush = (): void => {
    const times = Float64Array.from(updated);
    // The hashes as one string: one string to copy across, not 20,000.
    post({ batch: { keys, hashes: hashes.join(''), updated: times } });
    keys = [];
    hashes = [];
    updated = [];
  };
  const visit = (key: string, record: ProviderRecord): void => {
    keys.push(key);
    hashes.push(recordHash(record));
    updated.push(updatedAtOf(record, updatedAtField) ?? Number.NaN);
    if (keys.length >= BATCH) flush();
  };
  if (format.lineBased) {
    // Piece by piece, so that neither the file nor its text is ever whole in memory.
    let lines = 0;
    for await (const piece of wholeLines(path)) {
      format.parse(piece, path, visit, lines);
      for (let i = piece.indexOf('\n'); i >= 0; i = piece.indexOf('\n', i + 1)) lines++;
    }
  } else {
    format.parse(await readFile(path, 'utf8'), path, visit);
  }
  flush();
  post({ done: true });
}

main(workerData.config as FileProviderConfig).catch((err: unknown) => {
  post({ error: { code: err instanceof AbpError ? err.code : 'enumeration_failed', message: errorMessage(err) } });
});
