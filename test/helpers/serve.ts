import { request, type IncomingMessage } from 'node:http';
import { execa, type ResultPromise } from 'execa';
import { CLI, ROOT, type Sandbox } from './cli.js';

export const KEY = 'http-test-key-0123456789abcdef';

export interface Served {
  url: string;
  port: number;
  /** The one-time dashboard link `abp serve` printed. */
  login: string;
  proc: ResultPromise;
  stderr(): string;
  stop(): Promise<void>;
}

/** `abp serve --port 0` as a real process; resolves once it prints its address and dashboard link. */
export async function startServe(sb: Sandbox, env: Record<string, string> = {}, args: string[] = []): Promise<Served> {
  const proc = execa(process.execPath, [CLI, 'serve', '--port', '0', ...args], { env: { ...sb.env, ABP_API_KEY: KEY, ...env }, reject: false, cwd: ROOT });
  let seen = '';
  const ready = await new Promise<{ url: string; login: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`abp serve did not start: ${seen}`)), 20_000);
    proc.stderr?.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const url = /listening on (http:\/\/\S+)/.exec(seen)?.[1];
      const login = /dashboard \(one-time link[^)]*\): (http:\/\/\S+)/.exec(seen)?.[1];
      if (url && login) {
        clearTimeout(timer);
        resolve({ url, login });
      }
    });
    void proc.then((r) => {
      clearTimeout(timer);
      reject(new Error(`abp serve exited ${r.exitCode}: ${seen}`));
    });
  });
  return {
    ...ready,
    port: Number(new URL(ready.url).port),
    proc,
    stderr: () => seen,
    async stop() {
      proc.kill('SIGTERM');
      await proc;
    },
  };
}

export interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  text: string;
  json: any;
}

export interface CallOptions {
  method?: string;
  /** An object is sent as JSON; a string is sent as is. */
  body?: unknown;
  headers?: Record<string, string>;
  /** false: send no key at all. */
  key?: string | false;
}

/** A request with full control over Host, Origin and the body (fetch forbids setting Host). */
export function call(base: string, path: string, options: CallOptions = {}): Promise<Reply> {
  const u = new URL(path, base);
  const headers: Record<string, string> = { host: u.host, ...(options.headers ?? {}) };
  if (options.key !== false) headers.authorization = `Bearer ${options.key ?? KEY}`;
  const body = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  if (body !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: options.method ?? 'GET', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export interface SseEvent {
  id?: string;
  event: string;
  data: any;
}

/**
 * An SSE client over node:http that keeps every frame and comment, so a test can
 * check ids, types and keep-alives exactly.
 */
export class SseClient {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  ended = false;
  status = 0;
  private req: ReturnType<typeof request> | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly base: string,
    private readonly path: string,
    private readonly headers: Record<string, string> = {},
  ) {}

  open(): Promise<this> {
    const u = new URL(this.path, this.base);
    return new Promise((resolve, reject) => {
      this.req = request(
        { host: u.hostname, port: u.port, path: u.pathname + u.search, headers: { host: u.host, authorization: `Bearer ${KEY}`, accept: 'text/event-stream', ...this.headers } },
        (res) => {
          this.status = res.statusCode ?? 0;
          let buffer = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buffer += chunk;
            let i: number;
            while ((i = buffer.indexOf('\n\n')) >= 0) {
              this.frame(buffer.slice(0, i));
              buffer = buffer.slice(i + 2);
            }
            this.wake();
          });
          const done = () => {
            this.ended = true;
            this.wake();
          };
          res.on('end', done);
          res.on('close', done);
          resolve(this);
        },
      );
      this.req.on('error', (err) => {
        this.ended = true;
        this.wake();
        if (this.status === 0) reject(err);
      });
      this.req.end();
    });
  }

  private frame(text: string): void {
    const event: SseEvent = { event: 'message', data: undefined };
    const data: string[] = [];
    for (const line of text.split('\n')) {
      if (line.startsWith(':')) this.comments.push(line);
      else if (line.startsWith('id: ')) event.id = line.slice(4);
      else if (line.startsWith('event: ')) event.event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length > 0) {
      event.data = JSON.parse(data.join('\n'));
      this.events.push(event);
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Waits until the predicate holds (checked on every chunk) or the stream ends. */
  async until(predicate: (c: this) => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this)) {
      if (this.ended) throw new Error(`stream ended before the condition held; got ${JSON.stringify(this.events.map((e) => [e.id, e.event]))}`);
      if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(this.events.map((e) => [e.id, e.event]))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.req?.destroy();
  }

  /** The events that carry an id (everything stored), in arrival order. */
  stored(): SseEvent[] {
    return this.events.filter((e) => e.id !== undefined);
  }
}

/** A CSV-backed shell job whose units each take `sleepSeconds`. */
export function slowJob(csvPath: string, options: { name?: string; sleepSeconds?: number; maxWorkers?: number; failOn?: string } = {}) {
  const fail = options.failOn ? `[ "$1" = "${options.failOn}" ] && { echo "bad item $1" >&2; exit 3; }; ` : '';
  return {
    name: options.name ?? 'http job',
    user_intent: 'echo each row',
    enumerator_type: 'csv',
    enumerator_config: { file_path: csvPath, id_column: 'id' },
    worker_type: 'shell',
    worker_config: { command: 'sh', args: ['-c', `${fail}sleep ${options.sleepSeconds ?? 0}; printf '%s' "$1"`, 'sh', '{{item.text}}'] },
    max_workers: options.maxWorkers ?? 2,
    max_retries: 0,
  };
}

export async function waitForStatus(base: string, jobId: number, predicate: (job: any) => boolean, timeoutMs = 30_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await call(base, `/jobs/${jobId}`);
    if (predicate(r.json)) return r.json;
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not get there: ${r.text}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}
