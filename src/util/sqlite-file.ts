import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';

let addon: string | null | undefined;

/**
 * better-sqlite3's compiled addon, by path. Its default lookup (the `bindings`
 * package) finds the addon from the calling file's folder, which a bundle moves;
 * naming the file directly also skips a dozen probes on every start.
 */
function nativeBinding(): string | undefined {
  if (addon === undefined) {
    try {
      const root = dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json'));
      const file = join(root, 'build', 'Release', 'better_sqlite3.node');
      addon = existsSync(file) ? file : null;
    } catch {
      addon = null;
    }
  }
  return addon ?? undefined;
}

/** Opens a SQLite file with better-sqlite3: every SQLite handle abp opens comes from here. */
export function openSqliteFile(path: string, options: BetterSqlite3.Options = {}): BetterSqlite3.Database {
  const binding = nativeBinding();
  return new BetterSqlite3(path, binding === undefined ? options : { ...options, nativeBinding: binding });
}
