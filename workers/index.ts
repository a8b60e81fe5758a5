import { Registry } from '../src/contracts/registry.js';
import type { Worker } from '../src/contracts/worker.js';
import { agentCliWorker } from './agent-cli.js';
import { claudeWorker } from './claude.js';
import { functionWorker } from './function.js';
import { httpLlmWorker } from './http-llm.js';
import { shellWorker } from './shell.js';

/**
 * Every plug-in worker type. Adding one is a new file in this folder and one line here.
 * The sync jobs' own worker (`sync-apply`, src/sync/apply-worker.ts) is joined to these in src/app.ts.
 */
export const workers: Registry<Worker<any>> = new Registry<Worker<any>>('worker_type', [
  shellWorker,
  claudeWorker,
  agentCliWorker,
  httpLlmWorker,
  functionWorker,
]);
