import { statSync } from 'node:fs';

/**
 * File stamps for checkpoints (whole-file and dir providers). A stamp is trusted
 * only when its mtime is older than RACY_MS at the time it was taken: a file can
 * change twice within one tick of the file system's clock (a few milliseconds on
 * Linux, up to 2 s on FAT), and a stamp taken between the two would hide the
 * second change. An untrusted stamp is read again at the next run.
 */
export const RACY_MS = 2000;

export function settledMtime(mtimeMs: number, now: number): boolean {
  return mtimeMs < now - RACY_MS;
}

/** What a whole file's checkpoint holds. */
export interface FileStamp {
  size: number;
  mtime_ms: number;
  ino: number;
}

/** The file's stamp, or null when there is no file. */
export function fileStamp(path: string): FileStamp | null {
  const st = statSync(path, { throwIfNoEntry: false });
  return st?.isFile() ? { size: st.size, mtime_ms: st.mtimeMs, ino: st.ino } : null;
}

/** Whether a stored checkpoint is this stamp (size, mtime and inode all equal). */
export function sameStamp(stored: unknown, now: FileStamp): boolean {
  if (stored === null || typeof stored !== 'object') return false;
  const s = stored as Partial<FileStamp>;
  return s.size === now.size && s.mtime_ms === now.mtime_ms && s.ino === now.ino;
}
