import { stat } from 'node:fs/promises';
import { AbpError } from '../src/domain/errors.js';

/** Errors that say which field points where, and what is wrong with it. */
export async function requireFile(field: string, path: string): Promise<void> {
  const info = await statOrExplain(field, path);
  if (info.isDirectory()) throw new AbpError('invalid_input', `${field}: ${path} is a directory, not a file`);
}

export async function requireDirectory(field: string, path: string): Promise<void> {
  const info = await statOrExplain(field, path);
  if (!info.isDirectory()) throw new AbpError('invalid_input', `${field}: ${path} is a file, not a directory`);
}

async function statOrExplain(field: string, path: string) {
  try {
    return await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new AbpError('invalid_input', `${field}: no such file or directory: ${path}`);
    if (code === 'EACCES') throw new AbpError('invalid_input', `${field}: permission denied: ${path}`);
    throw new AbpError('invalid_input', `${field}: cannot read ${path}: ${(err as Error).message}`);
  }
}
