import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { AbpError, type ErrorCode } from '../../domain/errors.js';
import { PACKAGE_ROOT } from '../../package-root.js';
import type { PackedSnapshot } from './packed-snapshot.js';

/**
 * A side read on a worker thread (a large file's records, a large folder's
 * files): the thread posts its entries in batches, which go into a
 * PackedSnapshot while it reads on, then what it ends with, or an error.
 */
export type ThreadReadMessage<End> =
  | { batch: { keys: string[]; hashes: string; updated: Float64Array } }
  | { done: End }
  | { error: { code: ErrorCode; message: string } };

/** The compiled script of a read thread (they run from dist/, as the CLI does). */
export function threadScript(name: string): string {
  return join(PACKAGE_ROOT, 'dist', 'src', 'sync', 'providers', `${name}.js`);
}

/** Runs `script` with `workerData`, fills `into` with its batches and resolves with its end; an abort stops the thread. */
export function readInThread<End>(script: string, workerData: unknown, into: PackedSnapshot, signal: AbortSignal): Promise<End> {
  return new Promise<End>((resolvePromise, reject) => {
    const worker = new Worker(script, { workerData });
    let settled = false;
    const settle = (err: unknown, end?: End): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      void worker.terminate();
      if (err === undefined) resolvePromise(end as End);
      else reject(err);
    };
    const onAbort = (): void => settle(new AbpError('enumeration_failed', `the snapshot was stopped (${String(signal.reason)})`));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: ThreadReadMessage<End>) => {
      if ('error' in m) return settle(new AbpError(m.error.code, m.error.message));
      if ('done' in m) return settle(undefined, m.done);
      into.add(m.batch.keys, m.batch.hashes, m.batch.updated);
    });
    worker.on('error', (err) => settle(err));
    worker.on('exit', (code) => settle(new AbpError('internal', `the snapshot thread exited (code ${code}) before it finished`)));
  });
}

/** In a read thread: posts one message (a batch's times are transferred, not copied). */
export function postFromThread<End>(post: ((message: unknown, transfer?: ArrayBuffer[]) => void) | undefined, message: ThreadReadMessage<End>): void {
  post?.(message, 'batch' in message ? [message.batch.updated.buffer as ArrayBuffer] : []);
}
