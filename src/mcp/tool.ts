import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { App } from '../app.js';
import { AbpError, errorMessage } from '../domain/errors.js';

export type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

export interface ToolContext {
  app: App;
  server: McpServer;
}

/** One MCP tool: its schemas, annotations and a handler that returns plain data. */
export interface ToolDef<I extends z.ZodRawShape = z.ZodRawShape, O extends z.ZodRawShape = z.ZodRawShape> {
  name: string;
  title: string;
  description: string;
  input: I;
  output: O;
  annotations: ToolAnnotations;
  handler(args: z.infer<z.ZodObject<I>>, ctx: ToolContext, extra: Extra): Promise<z.infer<z.ZodObject<O>>>;
}

export function defineTool<I extends z.ZodRawShape, O extends z.ZodRawShape>(def: ToolDef<I, O>): ToolDef<I, O> {
  return def;
}

/** Structured content plus the same data as text, for clients that only read text. */
export function ok(data: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(data, null, 2) }], structuredContent: data };
}

/** Errors are tool results, and say what to do next. */
export function fail(err: unknown): CallToolResult {
  const message = err instanceof AbpError ? `${err.message}${nextStep(err)}` : `internal error: ${errorMessage(err)}`;
  return { isError: true, content: [{ type: 'text', text: message }] };
}

function nextStep(err: AbpError): string {
  const status = err.details?.status;
  const id = err.details?.job_id;
  if (err.code === 'not_found') return '. Use list_jobs to see the jobs that exist.';
  if (err.code === 'invalid_input') return '. Fix that field and call the tool again; list_enumerators shows every config field.';
  if (err.code !== 'illegal_transition' || id === undefined) return '';
  switch (status) {
    case 'RUNNING':
      return `. Pause it first (pause_job ${id}) or wait for it to finish.`;
    case 'PAUSED':
      return `. Resume it with resume_job ${id}, or cancel it with cancel_job.`;
    case 'TESTING':
      return `. Approve or reject its test unit first (start_job with approve or reject).`;
    case 'CREATED':
      return `. Start it first with start_job ${id}.`;
    case 'FAILED':
      return `. Retry its failed units with retry_failed ${id}.`;
    default:
      return '. The job has ended; create a new one.';
  }
}

export function register(server: McpServer, app: App, tools: ToolDef<any, any>[]): void {
  for (const tool of tools) {
    server.registerTool(
      tool.name,
      {
        title: tool.title,
        description: tool.description,
        // Strict: a misspelt argument is an error that names it, as on the CLI and over HTTP, not silently dropped.
        inputSchema: z.strictObject(tool.input),
        // Loose: clients validate structuredContent, and fields may be added later.
        outputSchema: z.looseObject(tool.output),
        annotations: { title: tool.title, ...tool.annotations },
      },
      (async (args: Record<string, unknown>, extra: Extra) => {
        try {
          return ok(await tool.handler(args, { app, server }, extra));
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
