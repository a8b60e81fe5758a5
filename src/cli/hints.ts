import type { NextStep } from '../domain/next-step.js';

/** The CLI's words for a next step: the commands a person types. */
export function cliHint(step: NextStep): string {
  switch (step.action) {
    case 'start':
      return `Start it with abp start ${step.job_id}.`;
    case 'wait_for_test':
      return `Wait for the test unit: abp start ${step.job_id} --wait`;
    case 'review_test':
      return `Look at the test unit's output, then approve it (abp start ${step.job_id} --approve) or reject it (abp start ${step.job_id} --reject) and edit the prompt.`;
    case 'test_failed':
      return (
        `The test unit failed (its error is above; it gets one attempt). Run it again with abp start ${step.job_id}, ` +
        `or approve anyway to run every unit (abp start ${step.job_id} --approve; the test unit runs again among them, with retries). ` +
        `To edit the prompt first: abp start ${step.job_id} --reject.`
      );
    case 'edit_and_retest':
      return `The test unit was reset. Edit the prompt with \`abp update ${step.job_id} --prompt-file FILE\`, then start again to re-test.`;
    case 'follow':
      return `Running. Watch it with abp watch ${step.job_id}; read results with abp results ${step.job_id}.`;
    case 'read_results':
      return `Done. Read the results: abp results ${step.job_id}`;
    case 'retry_failed':
      return `Some units failed: abp units ${step.job_id} --status FAILED, then abp retry ${step.job_id}`;
    case 'resume':
      return `Paused (${step.reason ?? 'no reason'}). Resume with abp resume ${step.job_id}.`;
    case 'raise_budget':
      return `Raise the budget (abp update ${step.job_id} --max-cost USD), then abp resume ${step.job_id}.`;
    case 'approve_code':
      return step.code_sha256
        ? `Show the code to a person. It runs only after they approve this exact hash: abp approve ${step.job_id} --code-sha256 ${step.code_sha256}`
        : `abp approve ${step.job_id} shows the code and its hash to approve`;
    case 'cancel':
      return `abp cancel ${step.job_id}`;
    case 'list_jobs':
      return 'abp list shows the jobs that exist.';
    case 'create_job':
      return 'The job has ended; create a new one (abp create).';
  }
}

/** An error's message with its next step in CLI words, if it has one. */
export function cliErrorText(message: string, details: Record<string, unknown> | undefined): string {
  const next = details?.next as NextStep | undefined;
  return next ? `${message.replace(/\.$/, '')}. ${cliHint(next)}` : message;
}
