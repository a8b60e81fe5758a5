import { ResourceTemplate, type McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { App } from '../app.js';
import { AbpError } from '../domain/errors.js';

function json(uri: string, data: unknown) {
  return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(data, null, 2) }] };
}

function idOf(value: string | string[] | undefined): number {
  const id = Number(Array.isArray(value) ? value[0] : value);
  if (!Number.isSafeInteger(id) || id < 1) throw new AbpError('invalid_input', `job_id: expected a positive integer, got ${JSON.stringify(value)}`);
  return id;
}

/** Read-only views an assistant can attach as context. */
export function registerResources(server: McpServer, app: App): void {
  server.registerResource(
    'status',
    'abp://status',
    { title: 'abp status', description: 'Live executors and the number of jobs in each state.', mimeType: 'application/json' },
    async (uri) => json(uri.href, await app.orchestrator.overview()),
  );
  server.registerResource(
    'jobs',
    'abp://jobs',
    { title: 'Recent jobs', description: 'The 50 most recent jobs with their status.', mimeType: 'application/json' },
    async (uri) => json(uri.href, await app.orchestrator.listJobs({}, { limit: 50, offset: 0 })),
  );
  const listJobs = async () => ({
    resources: (await app.orchestrator.listJobs({}, { limit: 50, offset: 0 })).map((j) => ({ uri: `abp://jobs/${j.job_id}`, name: `job ${j.job_id}: ${j.name}` })),
  });
  server.registerResource(
    'job',
    new ResourceTemplate('abp://jobs/{job_id}', { list: listJobs }),
    { title: 'A job', description: 'One job with its spec and status.', mimeType: 'application/json' },
    async (uri, vars) => json(uri.href, await app.orchestrator.getJob(idOf(vars.job_id))),
  );
  server.registerResource(
    'job-results',
    new ResourceTemplate('abp://jobs/{job_id}/results', { list: undefined }),
    { title: 'A job’s results', description: 'The first 100 unit outcomes of a job.', mimeType: 'application/json' },
    async (uri, vars) => json(uri.href, await app.orchestrator.resultsPage(idOf(vars.job_id), {}, { limit: 100, offset: 0 })),
  );
}
