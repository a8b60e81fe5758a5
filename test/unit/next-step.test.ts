import { describe, expect, it } from 'vitest';
import { cliHint } from '../../src/cli/hints.js';
import { nextStepFor } from '../../src/domain/next-step.js';
import { httpHint } from '../../src/http/hints.js';
import { mcpHint } from '../../src/mcp/hints.js';

const testing = { id: 7, status: 'TESTING' as const, status_reason: null };

describe('the next step after the test unit', () => {
  it('a failed test unit has its own step; a succeeded one is reviewed; a running one is waited for', () => {
    expect(nextStepFor(testing, 'FAILED')).toEqual({ action: 'test_failed', job_id: 7 });
    expect(nextStepFor(testing, 'SUCCEEDED')).toEqual({ action: 'review_test', job_id: 7 });
    expect(nextStepFor(testing, 'RUNNING')).toEqual({ action: 'wait_for_test', job_id: 7 });
  });

  it('every front end names both choices for a failed test unit: run it again, or approve anyway', () => {
    const step = nextStepFor(testing, 'FAILED');
    const cli = cliHint(step);
    expect(cli).toContain('abp start 7,');
    expect(cli).toContain('abp start 7 --approve');
    const mcp = mcpHint(step);
    expect(mcp).toContain('start_job {"job_id":7} runs the test unit again');
    expect(mcp).toContain('start_job {"job_id":7,"approve":true}');
    const http = httpHint(step);
    expect(http).toContain('POST /jobs/7/start runs it again');
    expect(http).toContain('POST /jobs/7/start {"approve": true}');
  });
});
