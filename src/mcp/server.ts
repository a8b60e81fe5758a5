import { createRequire } from 'node:module';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { JsonSchemaType, JsonSchemaValidator, jsonSchemaValidator } from '@modelcontextprotocol/sdk/validation';
import { VERSION } from '../version.js';
import { registerPrompts } from './prompts.js';
import { registerResources } from './resources.js';
import { installTasks, JobTaskStore, TASK_CAPABILITIES } from './tasks.js';
import { register, type AppSource } from './tool.js';
import { approvalTools } from './tools/approval.js';
import { controlTools } from './tools/control.js';
import { dashboardUrl } from './tools/dashboard.js';
import { discoverTools } from './tools/discover.js';
import { inspectTools } from './tools/inspect.js';
import { jobTools } from './tools/jobs.js';

const INSTRUCTIONS = `abp runs one instruction over many items (files, CSV rows, records) in parallel, in a background executor that outlives this conversation.
Flow: list_enumerators and list_workers → preview_job → create_job → start_job (runs ONE test unit) → show the test unit's output to the user →
start_job {"job_id": N, "approve": true} only on the user's word (or reject=true, update_job, start_job again) → get_job_status to follow → get_results, passing each page's cursor back (or write_results for everything).
Where the host can show a dialog, start_job asks the person directly; the job records who approved. Never approve a test unit, or skip it, on the user's behalf.`;

/**
 * The SDK's JSON Schema validator, loaded and made on first use. The SDK uses it
 * only to check a form's answer (start_job's approval dialog); its default, made
 * with every server, compiled Ajv and its formats at start-up. The SDK's server
 * also imports Ajv's module for that default, which the bundle leaves out
 * (src/build/bundle.ts): the validator comes from the SDK's CommonJS build, with
 * Ajv, from node_modules, synchronously, the first time a dialog is answered.
 */
function lazyValidator(): jsonSchemaValidator {
  let ajv: jsonSchemaValidator | undefined;
  const load = (): jsonSchemaValidator => {
    const { AjvJsonSchemaValidator } = createRequire(import.meta.url)('@modelcontextprotocol/sdk/validation/ajv') as typeof import('@modelcontextprotocol/sdk/validation/ajv');
    return new AjvJsonSchemaValidator();
  };
  return { getValidator: <T>(schema: JsonSchemaType): JsonSchemaValidator<T> => (ajv ??= load()).getValidator<T>(schema) };
}

/**
 * The MCP server: every tool and resource, over whatever transport the caller connects.
 * `owner` is whose tasks it sees (src/mcp/tasks.ts): the ABP_HOME over stdio (the default), the API key over HTTP.
 * The server answers `initialize` and lists its tools, prompts and resources
 * without the app; the first request that needs it asks `source` for it.
 */
export function createMcpServer(source: AppSource, owner?: string): McpServer {
  const app = () => source.app();
  const taskStore = new JobTaskStore(app, owner);
  const server = new McpServer(
    { name: 'abp', version: VERSION },
    { capabilities: { logging: {}, tasks: TASK_CAPABILITIES }, instructions: INSTRUCTIONS, taskStore, jsonSchemaValidator: lazyValidator() },
  );
  register(server, source, [...discoverTools, ...jobTools, ...inspectTools, ...controlTools, ...approvalTools, dashboardUrl]);
  registerResources(server, app);
  registerPrompts(server, app);
  installTasks(server, source, taskStore);
  return server;
}
