import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import type { ResultPromise } from 'execa';
import { startMockOpenAI, userContent, type MockServer, type RecordedRequest, type Reply } from '../fixtures/mock-openai.js';
import { CLI, Sandbox, sleep } from '../helpers/cli.js';
import { call, startServe, type CallOptions, type Served } from '../helpers/serve.js';

/**
 * The real things the catalogue's rows are tried against, one bench per group of
 * rows: a sandbox for spawned CLI commands, `abp serve`, `abp mcp` over stdio, or
 * a serve plus a foreground executor and a mock LLM API for worker failures.
 */
export type Group = 'cli-flags' | 'cli-inputs' | 'http' | 'mcp' | 'worker';

/** What a user saw: the message (its first line, when more follows) and how it was signalled. */
export interface Seen {
  error: string;
  /** `exit 2`, `HTTP 400 invalid_input`, `isError`, `unit FAILED (permanent)`, … */
  signal: string;
  /** Values for the row's <tokens> that only the run knows: job ids, process groups. */
  vars?: Record<string, string | number>;
}

/** The API key of the mock LLM; the worker bench's processes have it in CATALOGUE_LLM_KEY. */
const LLM_KEY = 'sk-catalogue';

export class Bench {
  readonly sb: Sandbox;
  /** Where every row writes its input files: `<dir>` in the catalogue. */
  readonly dir: string;
  serve: Served | undefined;
  mcp: Client | undefined;
  executor: ResultPromise | undefined;
  llm: MockServer | undefined;

  private constructor(env: Record<string, string>) {
    this.sb = new Sandbox(env);
    this.dir = this.sb.path('in');
    mkdirSync(this.dir);
  }

  static async open(group: Group): Promise<Bench> {
    switch (group) {
      case 'cli-flags':
      case 'cli-inputs':
        return new Bench({});
      case 'http': {
        // A small body cap and rate limit, so the 413 and 429 rows need no megabytes or hundreds of calls.
        const b = new Bench({ ABP_MAX_BODY_BYTES: '4096', ABP_RATE_LIMIT: '100' });
        b.serve = await startServe(b.sb);
        return b;
      }
      case 'mcp': {
        const b = new Bench({});
        const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { ...process.env, ...b.sb.env } as Record<string, string>, stderr: 'pipe' });
        // A headless host: it offers dialogs (elicitation) and cancels every one, as `claude -p` does.
        b.mcp = new Client({ name: 'catalogue', version: '1.0.0' }, { capabilities: { elicitation: {} } });
        b.mcp.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'cancel' }));
        await b.mcp.connect(transport);
        return b;
      }
      case 'worker': {
        const b = new Bench({ CATALOGUE_LLM_KEY: LLM_KEY });
        b.llm = await startMockOpenAI(llmScript());
        // One executor for every row's job, started first so that `start` launches no detached one.
        b.executor = b.sb.executor({ ABP_EXECUTOR_IDLE_SECONDS: '0' });
        const deadline = Date.now() + 30_000;
        while ((await b.sb.query('select id from executors').catch(() => [])).length === 0) {
          if (Date.now() > deadline) throw new Error('the executor did not register');
          await sleep(100);
        }
        b.serve = await startServe(b.sb);
        return b;
      }
    }
  }

  async close(): Promise<void> {
    await this.mcp?.close().catch(() => undefined);
    await this.serve?.stop().catch(() => undefined);
    if (this.executor) {
      this.executor.kill('SIGTERM');
      await this.executor;
    }
    await this.llm?.close();
    await this.sb.cleanup();
  }

  /** Writes an input file under `<dir>` and returns its path. */
  write(name: string, content: string | Buffer): string {
    const path = join(this.dir, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
    return path;
  }

  /** Jobs, units and events in the database, straight from the tables; none while abp has not made its tables yet. */
  async stored(): Promise<{ jobs: number; units: number; events: number }> {
    try {
      const [row] = await this.sb.query<{ jobs: number; units: number; events: number }>(
        'select (select count(*) from jobs) jobs, (select count(*) from work_units) units, (select count(*) from events) events',
      );
      return { jobs: Number(row?.jobs), units: Number(row?.units), events: Number(row?.events) };
    } catch (err) {
      if (/no such table|does not exist|unable to open/i.test(String(err))) return { jobs: 0, units: 0, events: 0 };
      throw err;
    }
  }

  /** Runs `attempt` and checks that it left no job and no unit behind. */
  nothingCreated(attempt: () => Promise<Seen>): Promise<Seen> {
    return this.unchanged(attempt, ['jobs', 'units']);
  }

  /** Runs `attempt` and checks that it wrote nothing at all: no job, no unit, no event. */
  nothingChanges(attempt: () => Promise<Seen>): Promise<Seen> {
    return this.unchanged(attempt, ['jobs', 'units', 'events']);
  }

  private async unchanged(attempt: () => Promise<Seen>, tables: ('jobs' | 'units' | 'events')[]): Promise<Seen> {
    const before = await this.stored();
    const seen = await attempt();
    const after = await this.stored();
    if (tables.some((t) => after[t] !== before[t])) {
      throw new Error(`bad input left something behind: ${JSON.stringify(before)} before, ${JSON.stringify(after)} after`);
    }
    return seen;
  }

  /**
   * A CLI command that must fail: its stderr's first line without the `abp: `
   * prefix, and the exit code. What may follow the first line is named: the
   * command's usage, or a stack.
   */
  async cli(args: string[], env: Record<string, string> = {}): Promise<Seen> {
    const r = await this.sb.cli(args, env);
    if (r.exitCode === 0) throw new Error(`abp ${args.join(' ')} succeeded: ${r.stdout}`);
    const [first = '', ...rest] = r.stderr.split('\n');
    if (!first.startsWith('abp: ')) throw new Error(`no "abp: " error line on stderr: ${r.stderr}`);
    let signal = `exit ${r.exitCode}`;
    if (rest.length > 0) {
      if (rest[0]?.startsWith('usage: ')) signal += ', usage follows';
      else if (rest.every((l) => /^\s+at /.test(l) || l === '')) signal += ', stack follows';
      else throw new Error(`more than one line on stderr: ${r.stderr}`);
    }
    return { error: first.slice('abp: '.length), signal };
  }

  /** `abp create` with flags that must fail, and create nothing. */
  create(args: string[]): Promise<Seen> {
    return this.nothingCreated(() => this.cli(['create', '--name', 'bad', '--intent', 'x', ...args]));
  }

  /** An HTTP request that must fail: the error envelope's message, the status and the code. */
  async http(path: string, options: CallOptions = {}): Promise<Seen> {
    const r = await this.request(path, options);
    if (r.status < 400) throw new Error(`${options.method ?? 'GET'} ${path} answered ${r.status}: ${r.text}`);
    const e = r.json?.error;
    if (typeof e?.message !== 'string') throw new Error(`no error envelope: ${r.text}`);
    const retry = r.headers['retry-after'];
    return { error: e.message, signal: `HTTP ${r.status} ${e.code}${retry === undefined ? '' : `, Retry-After: ${retry}`}` };
  }

  /** An HTTP request that must succeed; its JSON. */
  async ok(path: string, options: CallOptions = {}): Promise<any> {
    const r = await this.request(path, options);
    if (r.status >= 400) throw new Error(`${options.method ?? 'GET'} ${path} answered ${r.status}: ${r.text}`);
    return r.json;
  }

  private request(path: string, options: CallOptions) {
    if (!this.serve) throw new Error('this bench has no server');
    return call(this.serve.url, path, options);
  }

  /** An MCP tool call that must fail: its error text. */
  async tool(name: string, args: Record<string, unknown>): Promise<Seen> {
    const r = (await this.client().callTool({ name, arguments: args })) as { isError?: boolean; content: { text: string }[] };
    if (!r.isError) throw new Error(`${name} succeeded: ${r.content[0]?.text}`);
    return { error: r.content[0]?.text ?? '', signal: 'isError' };
  }

  /** An MCP tool call that must succeed; its structured content. */
  async toolOk(name: string, args: Record<string, unknown>): Promise<any> {
    const r = (await this.client().callTool({ name, arguments: args })) as { isError?: boolean; content: { text: string }[]; structuredContent: any };
    if (r.isError) throw new Error(`${name} failed: ${r.content[0]?.text}`);
    return r.structuredContent;
  }

  private client(): Client {
    if (!this.mcp) throw new Error('this bench has no MCP client');
    return this.mcp;
  }

  /** A job created and started (no test unit) over HTTP; resolves once it has ended or paused, with no unit running. */
  async run(spec: Record<string, unknown>): Promise<{ job: any; units: any[] }> {
    const created = await this.ok('/jobs', { method: 'POST', body: { name: 'worker row', user_intent: 'x', max_retries: 0, ...spec } });
    await this.ok(`/jobs/${created.job_id}/start`, { method: 'POST', body: { skip_test: true } });
    const deadline = Date.now() + 45_000;
    for (;;) {
      const job = await this.ok(`/jobs/${created.job_id}`);
      if (['COMPLETED', 'FAILED', 'PAUSED'].includes(job.status) && job.counts.running === 0) {
        const { units } = await this.ok(`/jobs/${created.job_id}/units`);
        return { job, units };
      }
      if (Date.now() > deadline) throw new Error(`job ${created.job_id} did not settle: ${JSON.stringify(job)}`);
      await sleep(100);
    }
  }

  /** The mock LLM's base URL for the OpenAI API. */
  get llmUrl(): string {
    if (!this.llm) throw new Error('this bench has no mock LLM');
    return `${this.llm.url}/v1`;
  }
}

/**
 * The mock LLM answers items a and c, and fails item b the way the model name
 * says; `rate-limited` refuses the first request whatever its item, then answers.
 */
function llmScript() {
  let rateLimited = 0;
  return async (req: RecordedRequest): Promise<Reply> => {
    const model = String(req.body?.model ?? '');
    if (model === 'rate-limited') {
      rateLimited++;
      return rateLimited === 1 ? { type: 'error', status: 429, errorType: 'rate_limit_error', message: 'slow down', headers: { 'retry-after-ms': '100' } } : { type: 'text', text: 'fine' };
    }
    // The item is in the prompt as pretty-printed JSON.
    if (!userContent(req).includes('"id": "b"')) return { type: 'text', text: '{"ok": true}' };
    switch (model) {
      case 'plain-text':
        return { type: 'text', text: 'no JSON here' };
      case 'bad-request':
        return { type: 'error', status: 400, errorType: 'invalid_request_error', message: 'max_tokens is too large for this model' };
      case 'overloaded':
        return { type: 'error', status: 503, errorType: 'server_error', message: 'the model is overloaded' };
      // The two that pause the job answer late, so that a and c have been claimed (and answered) first.
      case 'bad-key':
        await sleep(300);
        return { type: 'error', status: 401, errorType: 'invalid_api_key', message: 'Incorrect API key provided' };
      case 'no-quota':
        await sleep(300);
        return { type: 'error', status: 429, errorType: 'insufficient_quota', message: 'You exceeded your current quota' };
      case 'not-json':
        return { type: 'raw', status: 200, body: '<html>502 Bad Gateway</html>', contentType: 'text/html' };
      case 'no-choices':
        return { type: 'raw', status: 200, body: '{"id": "chatcmpl-1", "object": "chat.completion"}' };
      default:
        return { type: 'text', text: 'fine' };
    }
  };
}

/** A row's expected text with its <tokens> filled in. */
export function fill(text: string, vars: Record<string, string | number>): string {
  return text.replace(/<([a-z_]+)>/g, (whole, name: string) => (name in vars ? String(vars[name]) : whole));
}
