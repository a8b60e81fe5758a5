import type { NextStep } from '../domain/next-step.js';

/** The HTTP API's words for a next step: the routes a client calls. */
export function httpHint(step: NextStep): string {
  const j = 'job_id' in step ? `/jobs/${step.job_id}` : '';
  switch (step.action) {
    case 'start':
      return `POST ${j}/start runs the test unit.`;
    case 'wait_for_test':
      return `POST ${j}/start {"wait_seconds": 30} waits for the test unit.`;
    case 'review_test':
      return `Show the test unit's output to a person; on their word POST ${j}/start {"approve": true}, or {"reject": true} to edit the prompt.`;
    case 'test_failed':
      return `The test unit failed after its one attempt: show its error to a person; on their word POST ${j}/start runs it again, or POST ${j}/start {"approve": true} runs every unit anyway (the test unit again among them, with retries); {"reject": true} goes back to edit the prompt.`;
    case 'edit_and_retest':
      return `The test unit was reset. Edit the prompt (update_job at /mcp), then POST ${j}/start to test again.`;
    case 'follow':
      return `Follow it with GET ${j}/events (server-sent events) or GET ${j}; results so far at GET ${j}/results.`;
    case 'read_results':
      return `Done. GET ${j}/results streams every result.`;
    case 'retry_failed':
      return `Some units failed: GET ${j}/units?status=FAILED, then POST ${j}/retry.`;
    case 'resume':
      return `Paused (${step.reason ?? 'no reason'}). POST ${j}/resume resumes it.`;
    case 'raise_budget':
      return `Raise the budget (update_job at /mcp), then POST ${j}/resume.`;
    case 'approve_code':
      return `A person must approve the code's exact sha256 (approve_code at /mcp)${step.code_sha256 ? `: ${step.code_sha256}` : ''}.`;
    case 'cancel':
      return `DELETE ${j} cancels it.`;
    case 'list_jobs':
      return 'GET /jobs lists the jobs that exist.';
    case 'create_job':
      return 'The job has ended; POST /jobs creates a new one.';
  }
}

/** Adds the next step's HTTP words as `next` beside the structured `next_step`. */
export function withHttpHint<T extends { next_step: NextStep }>(result: T): T & { next: string } {
  return { ...result, next: httpHint(result.next_step) };
}
