import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { App } from '../app.js';
import { VERSION } from '../app.js';
import { registerResources } from './resources.js';
import { register } from './tool.js';
import { approvalTools } from './tools/approval.js';
import { controlTools } from './tools/control.js';
import { dashboardUrl } from './tools/dashboard.js';
import { discoverTools } from './tools/discover.js';
import { inspectTools } from './tools/inspect.js';
import { jobTools } from './tools/jobs.js';

const INSTRUCTIONS = `abp runs one instruction over many items (files, CSV rows, ...) in parallel, in a background executor that outlives this conversation.
Typical flow: list_enumerators → preview the config → create_job → start_job (runs ONE test unit) → show the test output to the user →
start_job with approve=true only once the user approved (or reject=true, update_job, start_job again) → get_job_status to follow → get_results.
Never approve a test unit on the user's behalf.`;

/** The MCP server: every tool and resource, over whatever transport the caller connects. */
export function createMcpServer(app: App): McpServer {
  const server = new McpServer(
    { name: 'abp', version: VERSION },
    { capabilities: { logging: {} }, instructions: INSTRUCTIONS },
  );
  register(server, app, [...discoverTools, ...jobTools, ...inspectTools, ...controlTools, ...approvalTools, dashboardUrl]);
  registerResources(server, app);
  return server;
}
