import { describe, expect, it } from 'vitest';
import { isoTime, isoTimeOrNull } from '../../src/domain/iso-time.js';

describe('isoTime', () => {
  it('writes what Date.prototype.toISOString writes', () => {
    const instants = [0, 1, 999, 1_000, 951_782_400_000 /* 2000-02-29 */, 1_796_000_000_123, Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(0, 0, 1), -1, -62_000_000_000_000];
    let seed = 7;
    for (let i = 0; i < 2_000; i++) {
      seed = (seed * 48_271) % 2_147_483_647;
      instants.push(Math.floor((seed / 2_147_483_647) * 4_102_444_800_000));
    }
    for (const ms of instants) expect(isoTime(ms), String(ms)).toBe(new Date(ms).toISOString());
  });

  it('is now when given nothing, and leaves years past 9999 to toISOString', () => {
    const before = Date.now();
    const at = Date.parse(isoTime());
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual(Date.now());
    expect(isoTime(Date.UTC(10_000, 0, 1))).toBe('+010000-01-01T00:00:00.000Z');
    expect(() => isoTime(Number.NaN)).toThrow(RangeError);
  });

  it('writes a stored instant, a number or PostgreSQL bigint text, and null as null', () => {
    expect(isoTimeOrNull(null)).toBeNull();
    expect(isoTimeOrNull(1_500)).toBe('1970-01-01T00:00:01.500Z');
    expect(isoTimeOrNull('1796000000123')).toBe(new Date(1_796_000_000_123).toISOString());
  });
});
