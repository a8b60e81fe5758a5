import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { Enumerator, Item } from '../src/contracts/enumerator.js';
import { AbpError } from '../src/domain/errors.js';
import { RUNNER_SOURCE } from './dynamic-runner.js';

/** A context is for parameters (a region, a date range), not data: the code can read data itself. */
const MAX_CONTEXT_BYTES = 64 * 1024;

/**
 * Why a context is not plain JSON, or undefined when it is. It is stored with the
 * job and handed to another process as JSON, where a Date, an undefined or a NaN
 * would arrive as something else.
 */
function contextProblem(context: Record<string, unknown>): string | undefined {
  const stack: [unknown, string][] = [[context, '']];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [value, path] = next;
    const where = path || 'the context';
    if (value === null || typeof value === 'string' || typeof value === 'boolean') continue;
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) return `${where} is ${value}, which JSON cannot hold`;
      continue;
    }
    if (Array.isArray(value)) {
      value.forEach((v, i) => stack.push([v, `${path}[${i}]`]));
      continue;
    }
    const proto = typeof value === 'object' ? Object.getPrototypeOf(value) : undefined;
    if (proto !== Object.prototype && proto !== null) {
      return `${where} is ${typeof value === 'object' ? (proto?.constructor?.name ?? 'an object') : typeof value}, which is not plain JSON (objects, arrays, strings, numbers, booleans, null)`;
    }
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) stack.push([v, path ? `${path}.${k}` : k]);
  }
  const bytes = Buffer.byteLength(JSON.stringify(context), 'utf8');
  if (bytes > MAX_CONTEXT_BYTES) {
    return `${bytes} bytes of JSON, over the ${MAX_CONTEXT_BYTES}-byte cap; pass parameters here and let the code read larger data itself`;
  }
  return undefined;
}

const config = z.strictObject({
  code: z
    .string()
    .min(1)
    .max(1024 * 1024)
    .describe(
      'An ES module: `export default async function* enumerate(ctx) { yield {...} }`, or a default function that returns an array. Runs in a separate Node process only after a person approves its sha256.',
    ),
  context: z
    .record(z.string(), z.unknown(), { error: 'must be a JSON object, e.g. {"region": "eu"}' })
    .optional()
    .superRefine((value, issues) => {
      const problem = value === undefined ? undefined : contextProblem(value);
      if (problem) issues.addIssue({ code: 'custom', message: problem });
    })
    .describe(
      `A JSON object (at most ${MAX_CONTEXT_BYTES / 1024} KiB) the code receives as ctx.context. It is shown with the code for approval but is not part of the approved sha256, so new values need no new approval.`,
    ),
  timeout_seconds: z.number().positive().max(3600).default(60).describe('Wall-clock limit for the whole enumeration; the process is killed after it.'),
  max_memory_mb: z.int().min(16).max(8192).default(256).describe('Heap cap for the code’s process (--max-old-space-size).'),
  limit: z.int().positive().optional().describe('Stop after this many items.'),
});
type DynamicConfig = z.infer<typeof config>;

export function codeSha256(code: string): string {
  return createHash('sha256').update(code, 'utf8').digest('hex');
}

/** The child's whole environment: enough to run Node, and nothing that could be a secret. */
function minimalEnv(home: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    TMPDIR: home,
    LANG: 'C.UTF-8',
    TZ: process.env.TZ ?? 'UTC',
  };
}

/** Room for Node itself (code, young generation, native heap) beside max_memory_mb of heap. */
const NODE_OVERHEAD_MB = 192;

/** One protocol line (an item); past this it cannot be a valid item (at most 1 MiB), so it is not buffered further. */
const MAX_LINE_BYTES = 2 * 1024 * 1024;

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function tail(text: string, max = 1500): string {
  const t = text.trim();
  return t.length > max ? `…${t.slice(-max)}` : t;
}

export const dynamicEnumerator: Enumerator<DynamicConfig> = {
  type: 'dynamic',
  description:
    'Items from JavaScript you supply, run in a separate Node process with a timeout, a heap cap and no inherited secrets. Needs a person’s approval of the code’s sha256 first.',
  promptTemplate: 'generic',
  configSchema: config,
  approvalFor(cfg) {
    // The context is shown beside the code but not hashed: the approval is of what the code does, whatever values it is given.
    return { code: cfg.code, code_sha256: codeSha256(cfg.code), ...(cfg.context === undefined ? {} : { context: cfg.context }) };
  },
  async *enumerate(cfg, ctx) {
    const sha = codeSha256(cfg.code);
    if (ctx.approvedCodeSha256 !== sha) {
      throw new AbpError(
        'conflict',
        `enumerator_config.code: this code (sha256 ${sha}) has not been approved${ctx.approvedCodeSha256 ? `; the approval names ${ctx.approvedCodeSha256}, so the code changed after it was approved` : ''}; a person must approve exactly this hash before it runs`,
        { details: { code_sha256: sha } },
      );
    }
    const dir = mkdtempSync(join(tmpdir(), 'abp-dynamic-'));
    const file = join(dir, 'enumerate.mjs');
    writeFileSync(file, cfg.code, { mode: 0o600 });
    // Beside the code, as a file: it may be 64 KiB, more than belongs in a command line.
    const contextFile = join(dir, 'context.json');
    writeFileSync(contextFile, JSON.stringify(cfg.context ?? {}), { mode: 0o600 });
    // The heap cap does not cover Buffers and typed arrays: a data-segment limit (ulimit -d)
    // on top caps all of the process's memory, with room for Node itself.
    const dataKb = (cfg.max_memory_mb + NODE_OVERHEAD_MB) * 1024;
    const child = spawn(
      '/bin/sh',
      ['-c', `ulimit -d ${dataKb} 2>/dev/null; unset PWD OLDPWD; exec "$0" "$@"`, process.execPath, `--max-old-space-size=${cfg.max_memory_mb}`, '--input-type=module', '-e', RUNNER_SOURCE, file, cfg.limit === undefined ? '' : String(cfg.limit), contextFile],
      // Its own process group, so a timeout kills anything it spawned too.
      { cwd: dir, env: minimalEnv(dir), detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] },
    );
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-8000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => {
      child.on('close', (code, signal) => done({ code, signal }));
      child.on('error', () => done({ code: null, signal: null }));
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, cfg.timeout_seconds * 1000);
    const onAbort = () => killGroup(child.pid);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    // One line is one item: a line past MAX_LINE_BYTES stops the process before it is buffered whole.
    let lineBytes = 0;
    let oversized = false;
    (child.stdio[3] as Readable).on('data', (chunk: Buffer) => {
      const newline = chunk.lastIndexOf(10);
      lineBytes = newline === -1 ? lineBytes + chunk.length : chunk.length - newline - 1;
      if (lineBytes > MAX_LINE_BYTES && !oversized) {
        oversized = true;
        killGroup(child.pid);
      }
    });
    const tooLarge = () =>
      new AbpError('enumeration_failed', `dynamic code: item ${count} is over ${MAX_LINE_BYTES} bytes of JSON (one item may be at most 1 MiB); the process was stopped`);
    const lines = createInterface({ input: child.stdio[3] as Readable, crlfDelay: Infinity });
    let count = 0;
    let ending: { done?: number; error?: string } | undefined;
    try {
      for await (const line of lines) {
        if (oversized) throw tooLarge();
        let msg: { item?: unknown; done?: number; error?: string };
        try {
          msg = JSON.parse(line);
        } catch {
          throw new AbpError('enumeration_failed', `dynamic code: unreadable output after item ${count}: ${JSON.stringify(line.slice(0, 200))}`);
        }
        if ('item' in msg) {
          const value = msg.item;
          const item: Item = value !== null && typeof value === 'object' && !Array.isArray(value) ? { ...(value as Record<string, unknown>) } : { value };
          const id = item._id;
          item._index = count;
          item._id = typeof id === 'string' || typeof id === 'number' ? id : count;
          count++;
          yield item;
        } else {
          ending = msg;
        }
      }
      const { code, signal } = await exited;
      if (oversized) throw tooLarge();
      if (timedOut) {
        throw new AbpError('enumeration_failed', `dynamic code: killed after enumerator_config.timeout_seconds (${cfg.timeout_seconds}s) with ${count} items; it never finished (an endless loop, or a promise that never settles?)`);
      }
      if (ctx.signal.aborted) throw new AbpError('enumeration_failed', 'dynamic enumeration was cancelled');
      if (/out of memory|allocation failed/i.test(`${output}\n${ending?.error ?? ''}`)) {
        throw new AbpError('enumeration_failed', `dynamic code: ran out of memory (enumerator_config.max_memory_mb is ${cfg.max_memory_mb}) after ${count} items and was stopped`);
      }
      if (ending?.error !== undefined) {
        throw new AbpError('enumeration_failed', `dynamic code threw after ${count} items: ${tail(ending.error)}`);
      }
      if (ending?.done === undefined || code !== 0) {
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        throw new AbpError('enumeration_failed', `dynamic code: its process ${how} after ${count} items${output ? `: ${tail(output)}` : ''}`);
      }
    } finally {
      clearTimeout(timer);
      ctx.signal.removeEventListener('abort', onAbort);
      lines.close();
      // Stopping early (limit reached, or the consumer gave up) must not leave it running.
      if (child.exitCode === null && child.signalCode === null) killGroup(child.pid);
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
