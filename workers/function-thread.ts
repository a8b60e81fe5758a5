/**
 * The piscina thread entry of the function worker (the batching is in
 * function-pool.ts). One piscina task is a batch of the function's tasks; they
 * run one at a time, in order. Before it starts a task the thread claims it in
 * the batch's shared `cells` (QUEUED → RUNNING); a task the main thread
 * cancelled first (→ CANCELLED) is skipped. Each answer is posted on its own, on
 * the batch's `answers` port, as soon as it is known, and only then is the task
 * marked DONE: so when piscina terminates this thread (the main thread aborted
 * the batch for the task that is RUNNING), every answer given before is already
 * in the main thread's hands. The batch's result is how long its tasks ran and
 * how many ran, which sizes the next batches.
 */
import { pathToFileURL } from 'node:url';
import type { MessagePort } from 'node:worker_threads';

export const QUEUED = 0;
export const RUNNING = 1;
export const DONE = 2;
export const CANCELLED = 3;

/** One piscina task: a batch of calls of `module`'s exports. `answers` is transferred with it. */
export interface FunctionBatch {
  module: string;
  tasks: [name: string, task: unknown][];
  /** One Int32 per task: QUEUED, RUNNING, DONE or CANCELLED. */
  cells: SharedArrayBuffer;
  answers: MessagePort;
}

type Handler = (task: unknown) => unknown;
const handlers = new Map<string, Promise<Handler | null>>();

/**
 * The export to call: the module's named export (`default` by default), or, for
 * a CommonJS module whose `module.exports` is an object, that object's member.
 */
async function load(file: string, name: string): Promise<Handler | null> {
  const ns = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  let handler: unknown = await ns[name];
  if (typeof handler !== 'function' && ns.default !== null && typeof ns.default === 'object') handler = await (ns.default as Record<string, unknown>)[name];
  return typeof handler === 'function' ? (handler as Handler) : null;
}

function handlerFor(file: string, name: string): Promise<Handler | null> {
  const key = `${file}#${name}`;
  let handler = handlers.get(key);
  if (!handler) handlers.set(key, (handler = load(file, name)));
  return handler;
}

/** Posts one answer; one the structured clone refuses (a function, a symbol) fails its task with the clone's message. */
function answer(port: MessagePort, index: number, ok: boolean, value: unknown): void {
  try {
    port.postMessage([index, ok, value]);
  } catch (err) {
    port.postMessage([index, false, new Error(err instanceof Error ? err.message : String(err))]);
  }
}

export default async function runBatch({ module: file, tasks, cells: shared, answers }: FunctionBatch): Promise<[ms: number, ran: number]> {
  const cells = new Int32Array(shared);
  let ms = 0;
  let ran = 0;
  for (let i = 0; i < tasks.length; i++) {
    if (Atomics.compareExchange(cells, i, QUEUED, RUNNING) !== QUEUED) continue;
    const [name, task] = tasks[i] as [string, unknown];
    let started = 0;
    try {
      const handler = await handlerFor(file, name);
      if (handler === null) throw new Error(`No handler function exported from ${file}`);
      started = performance.now();
      const value = await handler(task);
      answer(answers, i, true, value);
    } catch (err) {
      answer(answers, i, false, err);
    }
    // Loading the module is not the task's time.
    if (started > 0) {
      ms += performance.now() - started;
      ran++;
    }
    Atomics.store(cells, i, DONE);
  }
  // The main thread reads the answers and closes the port (which closes this end).
  return [ms, ran];
}
