import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { App } from '../app.js';
import type { JobReader } from '../open-store.js';
import { AbpError, errorMessage } from '../domain/errors.js';
import { nextStepFor, type NextStep } from '../domain/next-step.js';
import type { JobState } from '../domain/states.js';
import { mcpHint } from './hints.js';

export type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

export interface ToolContext {
  app: App;
  server: McpServer;
}

/** Job rows without the app: what get_job_status and list_jobs need. */
export interface JobRows {
  reader: JobReader;
  executorStaleMs: number;
}

/**
 * How the server reaches abp. `app` loads the app on its first call (`abp mcp`:
 * a session that never calls abp never loads it) or hands over one already
 * loaded (HTTP). `rows`, where given, serves the tools that read job rows alone
 * while the app has not been asked for; undefined sends them to the app.
 */
export interface AppSource {
  app(): Promise<App>;
  rows?(): Promise<JobRows | undefined>;
}

/** What every MCP tool declares: its name, schemas and annotations. */
interface ToolShape<I extends z.ZodRawShape, O extends z.ZodRawShape> {
  name: string;
  title: string;
  description: string;
  input: I;
  output: O;
  annotations: ToolAnnotations;
}

/** One MCP tool with a handler that uses the app and returns plain data. */
export interface ToolDef<I extends z.ZodRawShape = z.ZodRawShape, O extends z.ZodRawShape = z.ZodRawShape> extends ToolShape<I, O> {
  handler(args: z.infer<z.ZodObject<I>>, ctx: ToolContext, extra: Extra): Promise<z.infer<z.ZodObject<O>>>;
}

/**
 * One MCP tool that reads job rows alone: the app's store once the app has
 * loaded, and before that the quick reader (AppSource.rows), so that polling a
 * job never loads the app.
 */
export interface ReadToolDef<I extends z.ZodRawShape = z.ZodRawShape, O extends z.ZodRawShape = z.ZodRawShape> extends ToolShape<I, O> {
  reads(args: z.infer<z.ZodObject<I>>, rows: JobRows): Promise<z.infer<z.ZodObject<O>>>;
}

export function defineTool<I extends z.ZodRawShape, O extends z.ZodRawShape>(def: ToolDef<I, O>): ToolDef<I, O> {
  return def;
}

export function defineReadTool<I extends z.ZodRawShape, O extends z.ZodRawShape>(def: ReadToolDef<I, O>): ReadToolDef<I, O> {
  return def;
}

/** The rows a read tool gets from a loaded app. */
function appRows(app: App): JobRows {
  return { reader: app.repo, executorStaleMs: app.config.executorStaleMs };
}

/** Structured content plus the same data as text, for clients that only read text. */
export function ok(data: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(data) }], structuredContent: data };
}

/** Errors are tool results, and say what to do next in MCP's words: tools and their arguments. */
export function fail(err: unknown): CallToolResult {
  let message = `internal error: ${errorMessage(err)}`;
  if (err instanceof AbpError) {
    const next = advice(err);
    message = next ? `${err.message.replace(/\.$/, '')}. ${next}` : err.message;
  }
  return { isError: true, content: [{ type: 'text', text: message }] };
}

function advice(err: AbpError): string {
  const next = err.details?.next as NextStep | undefined;
  if (next) return mcpHint(next);
  if (err.details?.unknown) return ''; // the message names the valid arguments itself
  if (err.code === 'not_found') return mcpHint({ action: 'list_jobs' });
  if (err.code === 'invalid_input') return `Fix that field and call the tool again; ${listerOf(err.message)}.`;
  const { job_id, status } = err.details ?? {};
  if (err.code === 'illegal_transition' && typeof job_id === 'number' && typeof status === 'string') {
    return mcpHint(nextStepFor({ id: job_id, status: status as JobState, status_reason: (err.details?.status_reason as string | undefined) ?? null }));
  }
  return '';
}

/** The tool that lists the fields an invalid_input message is about. */
function listerOf(message: string): string {
  if (/\bworker_(config|type)\b/.test(message)) return 'list_workers shows every worker type and its config fields';
  if (/\benumerator_(config|type)\b/.test(message)) return 'list_enumerators shows every enumerator type and its config fields';
  if (/\bsink\b/.test(message)) return "write_results' description lists the sink types";
  return "the tool's input schema lists its arguments";
}

/**
 * Arguments a tool does not take are refused with abp's own message: the valid
 * names and the nearest one. (The SDK's strict schema would only say
 * "Unrecognized key".)
 */
export function unknownArguments(tool: string, args: Record<string, unknown>, known: readonly string[]): AbpError | undefined {
  const unknown = Object.keys(args).filter((k) => !known.includes(k));
  if (unknown.length === 0) return undefined;
  const named = unknown.map((k) => {
    const near = nearest(k, known);
    return `${JSON.stringify(k)}${near ? ` (did you mean ${near}?)` : ''}`;
  });
  return new AbpError(
    'invalid_input',
    `${tool}: unknown argument${unknown.length > 1 ? 's' : ''} ${named.join(', ')}; it takes ${known.join(', ')}`,
    { details: { unknown } },
  );
}

/** The known name closest to `name` by edit distance, or a known name it is part of; none when nothing is close. */
function nearest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = k.includes(name) || name.includes(k) ? 1 : editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length] ?? 0;
}

/** Registers tools at once; a call loads the app, or waits for it, unless job rows alone answer it. */
export function register(server: McpServer, source: AppSource, tools: (ToolDef<any, any> | ReadToolDef<any, any>)[]): void {
  for (const tool of tools) {
    const known = Object.keys(tool.input);
    server.registerTool(
      tool.name,
      {
        title: tool.title,
        description: tool.description,
        // Loose, so that an unknown argument reaches the handler and gets abp's own message naming the valid ones.
        inputSchema: z.looseObject(tool.input),
        // Loose: clients validate structuredContent, and fields may be added later.
        outputSchema: z.looseObject(tool.output),
        annotations: { title: tool.title, ...tool.annotations },
      },
      (async (args: Record<string, unknown>, extra: Extra) => {
        try {
          const refused = unknownArguments(tool.name, args, known);
          if (refused) throw refused;
          if ('reads' in tool) return ok(await tool.reads(args, (await source.rows?.()) ?? appRows(await source.app())));
          return ok(await tool.handler(args, { app: await source.app(), server }, extra));
        } catch (err) {
          return fail(err);
        }
      }) as never,
    );
  }
}

/** Whether the connected client lets the server ask the person directly. */
export function canElicit(ctx: ToolContext): boolean {
  return Boolean(ctx.server.server.getClientCapabilities()?.elicitation);
}

// ---- field helpers: clients that can only send strings still work ----------

export const jobId = z.coerce.number().int().positive().describe('The job id, as returned by create_job or list_jobs.');

/** A JSON object, or a string holding one (some clients can only send strings). */
export function jsonObject(description: string) {
  return z.union([z.record(z.string(), z.unknown()), z.string()]).describe(`${description} An object, or a JSON string of one.`);
}

export function toObject(value: unknown, field: string): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') return value as Record<string, unknown>;
  try {
    const parsed = JSON.parse(value);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed;
  } catch {
    // fall through
  }
  throw new AbpError('invalid_input', `${field}: expected a JSON object, got ${JSON.stringify(value.slice(0, 80))}`);
}

export const flag = (description: string) =>
  z
    .union([z.boolean(), z.enum(['true', 'false'])])
    .optional()
    .describe(description);

export const truthy = (v: boolean | 'true' | 'false' | undefined) => v === true || v === 'true';

export const page = {
  limit: z.coerce.number().int().min(1).max(500).optional().describe('Page size (default 50, at most 500).'),
  offset: z.coerce.number().int().min(0).optional().describe('How many to skip (default 0).'),
};
