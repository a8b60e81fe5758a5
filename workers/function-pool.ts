import { join } from 'node:path';
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { PACKAGE_ROOT } from '../src/package-root.js';
import { CANCELLED, QUEUED, RUNNING, type FunctionBatch } from './function-thread.js';

/**
 * The function worker's batching on top of piscina. piscina is the thread pool:
 * its threads, their idle timeout, its queue, and terminating a thread whose
 * task is aborted. What abp adds is that the tasks queued in one turn go to
 * piscina as one `run` (a batch, run by function-thread.ts one task after
 * another), so a no-op unit no longer costs the executor's main thread a piscina
 * task of its own: two messages, an abort signal and piscina's bookkeeping.
 *
 * A batch is sized to run for about BATCH_BUDGET_MS by the tasks' measured time
 * (one task at first, and one at a time for slow tasks, up to MAX_BATCH). piscina
 * holds at most two batches per thread (one running, one queued, so a thread
 * that ends a batch starts the next at once); tasks queued meanwhile wait here,
 * where they make the next batches larger, and are shared out over the free
 * places when one frees.
 *
 * Each task's state is a cell of a SharedArrayBuffer sent with its batch: QUEUED,
 * RUNNING once the thread took it, DONE once its answer was posted (on the
 * batch's own MessagePort, as soon as it is known), CANCELLED when the main
 * thread took it back first. Aborting a task that is QUEUED cancels only it.
 * Aborting one that is RUNNING takes back the batch's tasks not started, then
 * aborts the batch's piscina run, so piscina terminates the thread (even a busy
 * loop stops); the answers posted before are read, and the tasks taken back go
 * to piscina again, in a new batch.
 */

const THREAD_FILE = join(PACKAGE_ROOT, 'dist', 'workers', 'function-thread.js');
const MAX_BATCH = 64;
const BATCH_BUDGET_MS = 2;

/** The error piscina gives a task that was aborted, by name: callers test `name === 'AbortError'`. */
export class AbortError extends Error {
  constructor(reason: unknown) {
    super('The task has been aborted', { cause: reason });
  }
  override get name(): string {
    return 'AbortError';
  }
}

interface Task {
  name: string;
  payload: unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  settled: boolean;
  /** The batch it was sent in, and its place there; undefined while in the queue. */
  batch: Batch | undefined;
  index: number;
}

interface Batch {
  tasks: Task[];
  cells: Int32Array;
  answers: MessagePort;
  controller: AbortController;
  /** Aborted by us, for a task it was running. */
  stopped: boolean;
}

export class FunctionPool {
  private readonly pool: Piscina;
  private readonly queue: Task[] = [];
  private flushing = false;
  /** Mean run time of one task, as the threads measure it; undefined before the first batch ends. */
  private perTaskMs: number | undefined;
  private destroyed = false;
  /** Batches given to piscina and not ended. */
  private inFlight = 0;

  constructor(
    private readonly module: string,
    private readonly maxThreads: number,
  ) {
    this.pool = new Piscina({ filename: THREAD_FILE, minThreads: 0, maxThreads, idleTimeout: 30_000 });
  }

  /** Runs `name` of the module on `payload` in a thread; rejects with an AbortError when `signal` aborts first. */
  run(name: string, payload: unknown, signal?: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.destroyed) return reject(new Error('The function pool was closed'));
      if (signal?.aborted) return reject(new AbortError(signal.reason));
      const task: Task = { name, payload, resolve, reject, signal, onAbort: undefined, settled: false, batch: undefined, index: -1 };
      if (signal) {
        task.onAbort = () => this.abort(task);
        signal.addEventListener('abort', task.onAbort, { once: true });
      }
      this.queue.push(task);
      this.schedule();
    });
  }

  async destroy(): Promise<void> {
    this.destroyed = true;
    const closed = new Error('Terminating worker thread');
    for (const task of this.queue.splice(0)) this.settle(task, false, closed);
    // piscina rejects the batches it holds; their tasks get that error (see failed).
    await this.pool.destroy();
  }

  private settle(task: Task, ok: boolean, value: unknown): void {
    if (task.settled) return;
    task.settled = true;
    if (task.onAbort) task.signal?.removeEventListener('abort', task.onAbort);
    if (ok) task.resolve(value);
    else task.reject(value);
  }

  /** Sends queued tasks once the current turn has queued all it will: more of them share a batch. */
  private schedule(): void {
    if (this.flushing || this.destroyed) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.queue.length === 0 || this.destroyed) return;
    const cap = this.perTaskMs === undefined ? 1 : Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_BUDGET_MS / Math.max(this.perTaskMs, 1e-3))));
    // Batches in piscina: one running and one waiting per thread, so a thread that ends a batch
    // starts the next at once; the rest wait here, where they make the next batches larger.
    const free = 2 * this.maxThreads - this.inFlight;
    for (let k = 0; k < free && this.queue.length > 0; k++) {
      this.send(this.queue.splice(0, Math.min(cap, Math.ceil(this.queue.length / (free - k)))));
    }
  }

  private send(tasks: Task[]): void {
    const { port1, port2 } = new MessageChannel();
    // Read only with receiveMessageOnPort: it needs no event loop, and must not keep the process alive.
    port1.unref();
    const cells = new SharedArrayBuffer(4 * tasks.length); // all QUEUED (0)
    const batch: Batch = { tasks, cells: new Int32Array(cells), answers: port1, controller: new AbortController(), stopped: false };
    tasks.forEach((task, i) => {
      task.batch = batch;
      task.index = i;
    });
    const data: FunctionBatch = { module: this.module, tasks: tasks.map((t) => [t.name, t.payload]), cells, answers: port2 };
    this.inFlight++;
    this.pool.run(data, { signal: batch.controller.signal, transferList: [port2] }).then(
      ([ms, ran]: [number, number]) => this.ended(batch, ms, ran),
      (err: unknown) => this.failed(batch, err),
    );
  }

  /** Reads the answers a batch posted, in the order they came. */
  private readAnswers(batch: Batch): void {
    for (let m = receiveMessageOnPort(batch.answers); m !== undefined; m = receiveMessageOnPort(batch.answers)) {
      const [index, ok, value] = m.message as [number, boolean, unknown];
      const task = batch.tasks[index];
      if (task?.batch === batch) this.settle(task, ok, value);
    }
  }

  private ended(batch: Batch, ms: number, ran: number): void {
    this.inFlight--;
    this.readAnswers(batch);
    batch.answers.close();
    if (ran > 0) this.perTaskMs = this.perTaskMs === undefined ? ms / ran : (this.perTaskMs + ms / ran) / 2;
    // Every task of an ended batch was answered, aborted, or taken back; this is a bug, said as one.
    for (const task of batch.tasks) if (task.batch === batch) this.settle(task, false, new Error('the function thread ended its batch without answering this task'));
    this.flush();
  }

  /**
   * Takes back the tasks of a batch that its thread has not started: after this
   * it starts none of them. Returns them in their order.
   */
  private takeBack(batch: Batch): Task[] {
    const back: Task[] = [];
    batch.tasks.forEach((task, i) => {
      if (task.settled || task.batch !== batch) return;
      if (Atomics.compareExchange(batch.cells, i, QUEUED, CANCELLED) === QUEUED) {
        task.batch = undefined;
        back.push(task);
      }
    });
    return back;
  }

  private requeue(tasks: Task[]): void {
    if (tasks.length === 0) return;
    // They never started: they go first.
    this.queue.unshift(...tasks);
    this.schedule();
  }

  private abort(task: Task): void {
    const batch = task.batch;
    // An answer given already is kept.
    if (batch) this.readAnswers(batch);
    if (task.settled) return;
    const aborted = new AbortError(task.signal?.reason);
    if (!batch) {
      const at = this.queue.indexOf(task);
      if (at >= 0) this.queue.splice(at, 1);
      this.settle(task, false, aborted);
      return;
    }
    // Not started: its thread will skip it, and nothing else changes.
    if (Atomics.compareExchange(batch.cells, task.index, QUEUED, CANCELLED) !== RUNNING) {
      this.settle(task, false, aborted);
      return;
    }
    const back = this.takeBack(batch);
    this.settle(task, false, aborted);
    if (Atomics.load(batch.cells, task.index) === RUNNING) {
      // It runs: piscina terminates its thread. Nothing else of the batch can start now.
      batch.stopped = true;
      batch.controller.abort();
    }
    this.requeue(back);
  }

  /** A batch's run failed: aborted by us, its thread failed (an uncaught error, an exit), or the pool was destroyed. */
  private failed(batch: Batch, err: unknown): void {
    this.inFlight--;
    const started = batch.tasks.some((_, i) => Atomics.load(batch.cells, i) !== QUEUED && Atomics.load(batch.cells, i) !== CANCELLED) || batch.stopped;
    const back = this.takeBack(batch);
    this.readAnswers(batch);
    batch.answers.close();
    // The task it ran gets the error (one aborted by us is settled already).
    batch.tasks.forEach((task, i) => {
      if (task.batch === batch && Atomics.load(batch.cells, i) === RUNNING) this.settle(task, false, err);
    });
    // A thread that ran none of the batch may never start (a broken install): its tasks fail rather than loop.
    if (this.destroyed || !started) {
      for (const task of back) this.settle(task, false, err);
    } else {
      this.requeue(back);
    }
    this.schedule();
  }
}
