/**
 * The worker thread behind a large folder's read (dir.ts): one walkFolder, its
 * batches posted as they fill. Started with workerData { root, extensions, stamps, now }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { walkFolder, type WalkEnd } from './folder-walk.js';
import { snapshotFailed } from './records.js';
import { postFromThread, type ThreadReadMessage } from './thread-read.js';

const post = (message: ThreadReadMessage<WalkEnd>): void => postFromThread(parentPort?.postMessage.bind(parentPort), message);
const { root, extensions, stamps, now } = workerData as { root: string; extensions?: string[]; stamps: string | null; now: number };

try {
  post({ done: walkFolder(root, extensions, stamps, now, (batch) => post({ batch })) });
} catch (err) {
  const failed = snapshotFailed(`dir ${root}`, err);
  post({ error: { code: failed.code, message: failed.message } });
}
