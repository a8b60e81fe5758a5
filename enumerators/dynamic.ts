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
import { CODE_FILE, CONTEXT_FILE, confinedCommand, confinedEnv, confinement, foldersToHide, SETUP_FAILED } from './confine.js';
import { RUNNER_SOURCE } from './dynamic-runner.js';

/** A context is for parameters (a region, a date range), not bulk data: the code reads no files but its own, so data belongs to the file, csv and json enumerators. */
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
    return `${bytes} bytes of JSON, over the ${MAX_CONTEXT_BYTES}-byte cap; pass parameters here; larger data belongs to the csv, json or file enumerators (dynamic code can read no other file)`;
  }
  return undefined;
}

const config = z.strictObject({
  code: z
    .string()
    .min(1)
    .max(1024 * 1024)
    .describe(
      'An ES module: `export default async function* enumerate(ctx) { yield {...} }`, or a default function that returns an array. Runs only after a person approves the sha256 of the code with its context and limits, ' +
        'in a confined Node process: no network, no child processes, no files but its own scratch folder (its cwd, /tmp), and none of abp’s environment or files.',
    ),
  context: z
    .record(z.string(), z.unknown(), { error: 'must be a JSON object, e.g. {"region": "eu"}' })
    .optional()
    .superRefine((value, issues) => {
      const problem = value === undefined ? undefined : contextProblem(value);
      if (problem) issues.addIssue({ code: 'custom', message: problem });
    })
    .describe(
      `A JSON object (at most ${MAX_CONTEXT_BYTES / 1024} KiB) the code receives as ctx.context: all the data it gets, since it can read no other file and reach no network. It is shown with the code for approval and is part of the approved sha256, so new values need a new approval.`,
    ),
  timeout_seconds: z.number().positive().max(3600).default(60).describe('Wall-clock limit for the whole enumeration; the process is killed after it. Part of the approved sha256.'),
  max_memory_mb: z
    .int()
    .min(16)
    .max(8192)
    .default(256)
    .describe('Heap cap for the code’s process (--max-old-space-size), and the size of its scratch folder. Part of the approved sha256.'),
  limit: z.int().positive().optional().describe('Stop after this many items. Part of the approved sha256.'),
});
type DynamicConfig = z.infer<typeof config>;

/** The sha256 of the code alone. */
export function codeSha256(code: string): string {
  return createHash('sha256').update(code, 'utf8').digest('hex');
}

/** JSON with every object's keys sorted, so equal values give equal text whatever their key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The limits a person approves with the code. */
function limitsOf(cfg: Pick<DynamicConfig, 'timeout_seconds' | 'max_memory_mb' | 'limit'>) {
  return { timeout_seconds: cfg.timeout_seconds, max_memory_mb: cfg.max_memory_mb, limit: cfg.limit ?? null };
}

/**
 * What a person approves, as one sha256: the canonical JSON of
 * {code, context, limit, max_memory_mb, timeout_seconds} (context {} and limit
 * null when absent). A change to any of them needs a new approval.
 */
export function approvalSha256(cfg: Pick<DynamicConfig, 'code' | 'context' | 'timeout_seconds' | 'max_memory_mb' | 'limit'>): string {
  const approved = canonicalJson({ code: cfg.code, context: cfg.context ?? {}, ...limitsOf(cfg) });
  return createHash('sha256').update(approved, 'utf8').digest('hex');
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
    'Items from JavaScript you supply, computed from its context alone: it runs in a confined Node process (no network, no child processes, no files but its scratch folder, none of abp’s secrets) with a timeout and a memory cap. Needs a person’s approval first, of the sha256 of the code with its context and limits.',
  promptTemplate: 'generic',
  configSchema: config,
  approvalFor(cfg) {
    // The context and the limits are hashed with the code: the person approves what runs, with what, for how long and how large.
    return {
      code: cfg.code,
      code_sha256: approvalSha256(cfg),
      ...(cfg.context === undefined ? {} : { context: cfg.context }),
      limits: limitsOf(cfg),
    };
  },
  async *enumerate(cfg, ctx) {
    const sha = approvalSha256(cfg);
    if (ctx.approvedCodeSha256 !== sha) {
      throw new AbpError(
        'conflict',
        `enumerator_config.code: this code with its context and limits (sha256 ${sha}) has not been approved${ctx.approvedCodeSha256 ? `; the approval names ${ctx.approvedCodeSha256}, so the code, its context or its limits changed after it was approved` : ''}; a person must approve exactly this hash before it runs`,
        { details: { code_sha256: sha } },
      );
    }
    // Where it cannot be confined, it does not run: this throws what is missing.
    const confined = await confinement();
    const dir = mkdtempSync(join(tmpdir(), 'abp-dynamic-'));
    const file = join(dir, 'enumerate.mjs');
    writeFileSync(file, cfg.code, { mode: 0o600 });
    // Beside the code, as a file: it may be 64 KiB, more than belongs in a command line.
    const contextFile = join(dir, 'context.json');
    writeFileSync(contextFile, JSON.stringify(cfg.context ?? {}), { mode: 0o600 });
    // The heap cap does not cover Buffers and typed arrays: a data-segment limit (ulimit -d)
    // on top caps all of the process's memory, with room for Node itself.
    const dataKb = (cfg.max_memory_mb + NODE_OVERHEAD_MB) * 1024;
    const { file: shell, args } = confinedCommand(confined, {
      codeFile: file,
      contextFile,
      scratchMb: cfg.max_memory_mb,
      dataKb,
      hide: foldersToHide(confined, ctx.privatePaths),
      nodeArgs: [`--max-old-space-size=${cfg.max_memory_mb}`, '--input-type=module', '-e', RUNNER_SOURCE, CODE_FILE, cfg.limit === undefined ? '' : String(cfg.limit), CONTEXT_FILE],
    });
    // Its own process group, so a timeout kills it and its namespace's PID 1 (and with it all it started).
    const child = spawn(shell, args, { cwd: dir, env: confinedEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
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
      if (output.includes(SETUP_FAILED)) {
        throw new AbpError('enumeration_failed', `dynamic code could not be confined, so it was not run: ${tail(output.replace(SETUP_FAILED, ''))}`);
      }
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
