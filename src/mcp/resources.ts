import { ResourceTemplate, type McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { App } from '../app.js';
import { completeJobId, jobIdFrom } from './prompts.js';

function json(uri: string, data: unknown) {
  return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(data, null, 2) }] };
}

/** Read-only views an assistant can attach as context. */
export function registerResources(server: McpServer, app: () => Promise<App>): void {
  const orchestrator = async () => (await app()).orchestrator;
  server.registerResource(
    'status',
    'abp://status',
    { title: 'abp status', description: 'Live executors and the number of jobs in each state.', mimeType: 'application/json' },
    async (uri) => json(uri.href, await (await orchestrator()).monitor.overview()),
  );
  server.registerResource(
    'jobs',
    'abp://jobs',
    { title: 'Recent jobs', description: 'The 50 most recent jobs with their status.', mimeType: 'application/json' },
    async (uri) => json(uri.href, await (await orchestrator()).listJobs({}, { limit: 50, offset: 0 })),
  );
  const complete = { job_id: (typed: string) => completeJobId(app, typed) };
  const listJobs = async () => ({
    resources: (await (await orchestrator()).listJobs({}, { limit: 50, offset: 0 })).map((j) => ({ uri: `abp://jobs/${j.job_id}`, name: `job ${j.job_id}: ${j.name}` })),
  });
  server.registerResource(
    'job',
    new ResourceTemplate('abp://jobs/{job_id}', { list: listJobs, complete }),
    { title: 'A job', description: 'One job with its spec and status.', mimeType: 'application/json' },
    async (uri, vars) => json(uri.href, await (await orchestrator()).getJob(jobIdFrom(vars.job_id))),
  );
  server.registerResource(
    'job-results',
    new ResourceTemplate('abp://jobs/{job_id}/results', { list: undefined, complete }),
    { title: 'A job’s results', description: 'The first 100 unit outcomes of a job.', mimeType: 'application/json' },
    async (uri, vars) => json(uri.href, await (await orchestrator()).resultsPage(jobIdFrom(vars.job_id), {}, { limit: 100, offset: 0 })),
  );
}
