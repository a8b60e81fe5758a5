import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { firstInvalidUtf8, Utf8Validator } from '../../enumerators/utf8.js';

async function drain(chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of Readable.from(chunks, { objectMode: false }).pipe(new Utf8Validator('t:'))) out.push(c as Buffer);
  return Buffer.concat(out);
}

describe('UTF-8 validation while streaming', () => {
  it('multi-byte characters split across chunks pass through unchanged', async () => {
    const text = Buffer.from('é€😀 line one\nzwei: ü\n', 'utf8');
    const oneByteChunks = [...text].map((b) => Buffer.from([b]));
    expect((await drain(oneByteChunks)).equals(text)).toBe(true);
  });

  it('a truncated character at the very end is invalid, on its line', async () => {
    await expect(drain([Buffer.from('ok\nfine\n'), Buffer.from([0xe2, 0x82])])).rejects.toThrow('t: line 3: invalid UTF-8 (byte 0xe2)');
  });

  it('finds the first bad byte: overlongs, surrogates, stray continuations', () => {
    expect(firstInvalidUtf8(Buffer.from('abc'))).toBe(-1);
    expect(firstInvalidUtf8(Buffer.from([0x61, 0xc0, 0xaf]))).toBe(1);
    expect(firstInvalidUtf8(Buffer.from([0x61, 0x62, 0xed, 0xa0, 0x80]))).toBe(2);
    expect(firstInvalidUtf8(Buffer.from([0x80]))).toBe(0);
    expect(firstInvalidUtf8(Buffer.from([0xf0, 0x9f, 0x98, 0x80, 0xf5]))).toBe(4);
  });
});
