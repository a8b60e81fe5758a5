import type { NextStep } from '../domain/next-step.js';

/** A tool call as the assistant should write it: the name and its arguments as JSON. */
export const call = (tool: string, args: Record<string, unknown>) => `${tool} ${JSON.stringify(args)}`;

/** MCP's words for a next step: the tools an assistant calls, with their arguments. */
export function mcpHint(step: NextStep): string {
  switch (step.action) {
    case 'start':
      return `Start it with ${call('start_job', { job_id: step.job_id })}: it runs one test unit.`;
    case 'wait_for_test':
      return `The test unit has not finished. Wait for it with ${call('start_job', { job_id: step.job_id, wait_seconds: 30 })}.`;
    case 'review_test':
      return (
        `Show the test unit's output to the user and ask them. Only on their word: ${call('start_job', { job_id: step.job_id, approve: true })} runs every unit; ` +
        `${call('start_job', { job_id: step.job_id, reject: true })} goes back to edit the prompt. Do not approve on your own.`
      );
    case 'test_failed':
      return (
        `The test unit failed after its one attempt: show its error to the user and ask them. Only on their word: ${call('start_job', { job_id: step.job_id })} runs the test unit again; ` +
        `${call('start_job', { job_id: step.job_id, approve: true })} runs every unit anyway (the test unit again among them, with retries); ` +
        `${call('start_job', { job_id: step.job_id, reject: true })} goes back to edit the prompt. Do not decide on your own.`
      );
    case 'edit_and_retest':
      return `The test unit was reset. Edit the prompt with ${call('update_job', { job_id: step.job_id, prompt_template: '…' })}, then ${call('start_job', { job_id: step.job_id })} tests again.`;
    case 'follow':
      return `Running. Follow it with ${call('get_job_status', { job_id: step.job_id })}; results so far: ${call('get_results', { job_id: step.job_id })}.`;
    case 'read_results':
      return `Done. Read the results with ${call('get_results', { job_id: step.job_id })} (pass each page's cursor back for the next), or save them all with write_results.`;
    case 'retry_failed':
      return `Some units failed: see why with ${call('list_units', { job_id: step.job_id, status: ['FAILED'] })}, then ${call('retry_failed', { job_id: step.job_id })}.`;
    case 'resume':
      return `Paused (${step.reason ?? 'no reason'}). Resume with ${call('resume_job', { job_id: step.job_id })}.`;
    case 'raise_budget':
      return `The budget is spent. Ask the user for a larger one, set it with ${call('update_job', { job_id: step.job_id, max_cost_usd: '…' })}, then ${call('resume_job', { job_id: step.job_id })}.`;
    case 'approve_code':
      return step.code_sha256
        ? `Show the code and its sha256 to the user. Only after they approve it: ${call('approve_code', { job_id: step.job_id, code_sha256: step.code_sha256 })}.`
        : `${call('approve_code', { job_id: step.job_id })} returns the code and its hash to show the user.`;
    case 'cancel':
      return `Wait for it, or cancel it with ${call('cancel_job', { job_id: step.job_id })}.`;
    case 'list_jobs':
      return 'Use list_jobs to see the jobs that exist.';
    case 'create_job':
      return 'The job has ended; create a new one with create_job.';
  }
}
