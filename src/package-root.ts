import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder that holds abp's package.json, found from this file whether it runs from src/ or dist/. */
export const PACKAGE_ROOT: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'prompts'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('abp: cannot find the package root (package.json next to prompts/)');
    dir = parent;
  }
  return dir;
})();
