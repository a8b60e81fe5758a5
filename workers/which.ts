import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';

/** The executable a command resolves to on PATH (or as given, when it has a slash), or undefined. */
export async function which(command: string, path = process.env.PATH ?? ''): Promise<string | undefined> {
  const candidates = isAbsolute(command) || command.includes('/')
    ? [command]
    : path.split(delimiter).filter(Boolean).map((dir) => join(dir, command));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}
