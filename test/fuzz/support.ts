import fc from 'fast-check';

/**
 * Settings shared by the fuzz tests. A failure prints its seed and path; replay
 * exactly that case with FC_SEED=… FC_PATH=… and `-t` naming the one test (a path
 * means nothing to the others). FC_NUM_RUNS searches harder than the quick default:
 *   FC_NUM_RUNS=5000 npx vitest run --project sqlite test/fuzz
 */
export function fuzz(numRuns: number): fc.Parameters<unknown> {
  const wanted = Number(process.env.FC_NUM_RUNS);
  const seed = Number(process.env.FC_SEED);
  return {
    numRuns: Number.isInteger(wanted) && wanted > 0 ? wanted : numRuns,
    ...(Number.isInteger(seed) && process.env.FC_SEED !== '' ? { seed } : {}),
    ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
  };
}

/** Pieces that have broken renderers and Markdown before: placeholders, fences, replacement patterns, line ends. */
const NASTY = [
  '{{intent}}',
  '{{ intent }}',
  '{{item.x}}',
  '{{item.file_path}}',
  '{{item_data}}',
  '{{job.name}}',
  '{{output_instructions}}',
  '{{item.{{intent}}}}',
  '{{{{item.x}}}}',
  '{{',
  '}}',
  '{',
  '}',
  '```',
  '```json',
  '~~~',
  '    ```',
  '\n',
  '\r\n',
  '\r',
  '$&',
  "$'",
  '$`',
  '$1',
  '$$',
  '\\',
  '"',
  '\u2028',
  '\u0000',
  '\uFEFF',
  'é',
  '👩‍👩‍👧',
];

/** Text that a person or an item could plausibly (or maliciously) contain. */
export const nastyText = (maxPieces = 12): fc.Arbitrary<string> =>
  fc
    .array(
      fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(...NASTY) },
        { weight: 2, arbitrary: fc.integer({ min: 1, max: 12 }).map((n) => '`'.repeat(n)) },
        { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 6 }) },
        { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
        // A lone surrogate: valid in a JS string, not in UTF-8.
        { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)) },
      ),
      { maxLength: maxPieces },
    )
    .map((pieces) => pieces.join(''));
