import { Registry } from '../src/contracts/registry.js';
import type { Worker } from '../src/contracts/worker.js';
import { shellWorker } from './shell.js';

/** Every worker type. Adding one is a new file in this folder and one line here. */
export const workers = new Registry<Worker<any>>('worker_type', [shellWorker]);
