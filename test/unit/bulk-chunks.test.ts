import { describe, expect, it } from 'vitest';
import { bulkChunks } from '../../src/store/bulk.js';

describe('bulkChunks: bulk statements cut into power-of-two sizes', () => {
  it('covers every row once, largest first, none over the cap, each a power of two', () => {
    for (let n = 0; n <= 2000; n++) {
      const sizes = bulkChunks(n, 256);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(n);
      for (const [i, size] of sizes.entries()) {
        expect(size & (size - 1)).toBe(0);
        expect(size).toBeLessThanOrEqual(256);
        if (i > 0) expect(size).toBeLessThanOrEqual(sizes[i - 1] as number);
      }
      // Below the cap, one statement of each size at most.
      if (n < 256) expect(new Set(sizes).size).toBe(sizes.length);
    }
    expect(bulkChunks(220, 256)).toEqual([128, 64, 16, 8, 4]);
    expect(bulkChunks(600, 256)).toEqual([256, 256, 64, 16, 8]);
  });
});
