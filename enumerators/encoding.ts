import { createReadStream } from 'node:fs';
import { pipeline, type Readable, type Transform } from 'node:stream';
import { z } from 'zod';
import { assertUtf8, Utf8Validator } from './utf8.js';

/**
 * The text encodings the csv and json enumerators read, under one config field,
 * so both accept the same names and treat them the same way.
 */
const TEXT_ENCODINGS = ['utf-8', 'utf8', 'utf-16le', 'latin1'] as const;
export type TextEncoding = (typeof TEXT_ENCODINGS)[number];

export const encodingField = z.enum(TEXT_ENCODINGS).default('utf-8').describe('The text encoding of the file; a byte order mark is skipped.');

/** Node's name for each encoding. */
export const NODE_ENCODINGS: Record<TextEncoding, BufferEncoding> = {
  'utf-8': 'utf8',
  utf8: 'utf8',
  'utf-16le': 'utf16le',
  latin1: 'latin1',
};

/**
 * The stage that checks the bytes on their way to a decoder: only UTF-8 can be
 * invalid (latin1 maps every byte, and utf-16le decodes any pair of bytes).
 * The error's advice names this config field.
 */
export function utf8Check(encoding: TextEncoding, what: string): Transform | undefined {
  return NODE_ENCODINGS[encoding] === 'utf8' ? new Utf8Validator(what) : undefined;
}

/** A file as a stream of text for a line reader; invalid UTF-8 fails naming its line. */
export function textStream(path: string, encoding: TextEncoding, what: string, signal: AbortSignal): { text: Readable; close: () => void } {
  const source = createReadStream(path, { signal });
  const check = utf8Check(encoding, what);
  if (check) pipeline(source, check, () => undefined);
  const text: Readable = check ?? source;
  text.setEncoding(NODE_ENCODINGS[encoding]);
  return { text, close: () => source.destroy() };
}

/** A whole file's bytes as text, without its byte order mark; invalid UTF-8 fails naming its line. */
export function decodeText(bytes: Buffer, encoding: TextEncoding, what: string): string {
  if (NODE_ENCODINGS[encoding] === 'utf8') assertUtf8(bytes, what);
  return bytes.toString(NODE_ENCODINGS[encoding]).replace(/^\uFEFF/, '');
}
