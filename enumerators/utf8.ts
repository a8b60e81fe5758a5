import { isUtf8 } from 'node:buffer';
import { Transform, type TransformCallback } from 'node:stream';
import { AbpError } from '../src/domain/errors.js';

/**
 * Byte offset of the first invalid UTF-8 sequence in `buf`, or -1. Only called on
 * the slow path, once `isUtf8` has said something is wrong.
 */
export function firstInvalidUtf8(buf: Uint8Array): number {
  let i = 0;
  while (i < buf.length) {
    const b = buf[i] as number;
    let need: number;
    let min: number;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else {
      return i;
    }
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = buf[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

/** How many bytes at the end of `buf` start a multi-byte character that the next chunk finishes. */
function incompleteTail(buf: Uint8Array): number {
  for (let back = 1; back <= Math.min(3, buf.length); back++) {
    const b = buf[buf.length - back] as number;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: keep looking for the lead
    const len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return len > back ? back : 0;
  }
  return 0;
}

function countNewlines(buf: Uint8Array, end = buf.length): number {
  let n = 0;
  let at = -1;
  const b = Buffer.from(buf.buffer, buf.byteOffset, end);
  while ((at = b.indexOf(10, at + 1)) !== -1) n++;
  return n;
}

/**
 * Passes bytes through unchanged and fails with the 1-based line number at the
 * first invalid UTF-8 sequence. Decoders would silently turn bad bytes into U+FFFD;
 * a user's data deserves to hear which line is broken instead.
 */
export class Utf8Validator extends Transform {
  private carry: Buffer = Buffer.alloc(0);
  private lines = 0;

  constructor(private readonly what: string) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const cut = data.length - incompleteTail(data);
    const whole = data.subarray(0, cut);
    if (!isUtf8(whole)) return done(this.invalid(whole));
    this.lines += countNewlines(whole);
    this.carry = Buffer.from(data.subarray(cut));
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.carry.length > 0) return done(this.invalid(this.carry));
    done();
  }

  private invalid(buf: Buffer): AbpError {
    return invalidUtf8(buf, this.what, this.lines);
  }
}

/** The advice names the field that fixes it: enumerator_config.encoding, which csv and json both take. */
function invalidUtf8(buf: Buffer, what: string, linesBefore: number): AbpError {
  const offset = Math.max(0, firstInvalidUtf8(buf));
  const line = linesBefore + countNewlines(buf, offset) + 1;
  const byte = (buf[offset] ?? 0).toString(16).padStart(2, '0');
  const advice = "set enumerator_config.encoding to the file's encoding (utf-16le, latin1)";
  return new AbpError('enumeration_failed', `${what} line ${line}: invalid UTF-8 (byte 0x${byte}); re-save the file as UTF-8 or ${advice}`, {
    details: { line },
  });
}

/** The same check for a whole buffer already in memory. */
export function assertUtf8(buf: Buffer, what: string): void {
  if (!isUtf8(buf)) throw invalidUtf8(buf, what, 0);
}
