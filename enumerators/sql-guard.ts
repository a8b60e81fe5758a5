import { AbpError } from '../src/domain/errors.js';

/**
 * The first keyword of a statement, after whitespace and comments (`--` and
 * nested block comments, as PostgreSQL reads them), upper-cased; `(` for a
 * parenthesized query; '' when there is nothing.
 */
export function firstKeyword(query: string): string {
  let i = 0;
  const n = query.length;
  while (i < n) {
    const c = query[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (query.startsWith('--', i)) {
      const end = query.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
    } else if (query.startsWith('/*', i)) {
      let depth = 0;
      while (i < n) {
        if (query.startsWith('/*', i)) {
          depth++;
          i += 2;
        } else if (query.startsWith('*/', i)) {
          depth--;
          i += 2;
          if (depth === 0) break;
        } else i++;
      }
    } else break;
  }
  if (query[i] === '(') return '(';
  return (/^[A-Za-z_]+/.exec(query.slice(i))?.[0] ?? '').toUpperCase();
}

/**
 * Statements that read, and the writes a READ ONLY transaction refuses by itself
 * (PostgreSQL then names the command, e.g. "cannot execute INSERT in a read-only
 * transaction"). Every other command, COPY … TO a file, DO, CALL, LOAD, SET,
 * LOCK, ANALYZE, REINDEX, CHECKPOINT, NOTIFY, COMMIT and the like, PostgreSQL
 * runs even inside a read-only transaction, so it never reaches the server.
 */
const POSTGRES_PASSES = new Set([
  '(', 'SELECT', 'WITH', 'VALUES', 'TABLE', 'SHOW', 'EXPLAIN',
  'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'CREATE', 'ALTER', 'DROP', 'COMMENT', 'GRANT', 'REVOKE', 'TRUNCATE',
]);

/** Refuses, before anything is sent, a PostgreSQL command that a read-only transaction would still run. */
export function refuseNonQueryPostgres(query: string): void {
  const keyword = firstKeyword(query);
  if (POSTGRES_PASSES.has(keyword)) return;
  throw new AbpError(
    'invalid_input',
    `enumerator_config.query: ${keyword || 'the statement'} is not a query; only a single SELECT is allowed (abp never sends PostgreSQL a command that a read-only transaction might still run)`,
  );
}
