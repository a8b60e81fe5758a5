/**
 * How a bulk statement of `n` rows is cut: into chunks whose sizes are powers of
 * two, the largest first, none over `max` (itself a power of two). A statement's
 * text, and the statement SQLite compiles from it, depend on its row count; a
 * batch of outcomes or events can be any size, and one text per size meant a new
 * compile (of a statement with thousands of parameters) for most batches. With
 * this, one kind of statement has at most log2(max) + 1 texts, all kept, and a
 * batch of n rows takes at most one statement of each size.
 */
export function bulkChunks(n: number, max: number): number[] {
  const sizes: number[] = [];
  for (let left = n; left > 0; ) {
    let size = max;
    while (size > left) size >>= 1;
    sizes.push(size);
    left -= size;
  }
  return sizes;
}
