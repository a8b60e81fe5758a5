import type { IncomingMessage } from 'node:http';
import { errorMessage } from '../domain/errors.js';
import { HttpError } from './errors.js';

/** Request bodies larger than this are refused with 413 (ABP_MAX_BODY_BYTES). */
export const DEFAULT_MAX_BODY = 4 * 1024 * 1024;

function tooLarge(max: number): HttpError {
  return new HttpError(413, 'payload_too_large', `request body over ${max} bytes; the limit is ABP_MAX_BODY_BYTES`, { max_bytes: max }, { connection: 'close' });
}

/**
 * Reads a JSON body up to `max` bytes. A declared length over the cap is refused
 * before reading; a body that grows past it stops being buffered. Empty → undefined.
 */
export async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) {
    // Drain without buffering, so the client reads the 413 instead of a reset.
    req.resume();
    throw tooLarge(max);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) {
      req.resume();
      throw tooLarge(max);
    }
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, 'invalid_json', `request body is not JSON: ${errorMessage(err)}`);
  }
}
