/**
 * A JSON.stringify replacer that hides the password in a `connection_string`
 * (`postgres://user:secret@host/db` → `postgres://user:***@host/db`). The sql
 * enumerator's config is stored with the job only as a record of where the items
 * came from: the enumeration ran before the job row was written. Other strings,
 * such as a dynamic enumerator's code (whose hash was approved), are kept as they are.
 */
export function redactUrlPasswords(key: string, value: unknown): unknown {
  if (key !== 'connection_string' || typeof value !== 'string') return value;
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@]*:)([^/@]*)@/i, (_m, head: string) => `${head}***@`);
}
