import type { WriteOutcome } from '../contracts/provider.js';
import type { Op, Side } from './pair-state.js';

/** What one applied chunk reports, as the unit's output: every key's outcome. */
export interface ApplyReport {
  side: Side;
  op: Op;
  outcomes: WriteOutcome[];
  /** Calls to the transform worker (the agentic part), for counting the work a re-run did. */
  transform_calls: number;
}

export function parseReport(text: string | null): ApplyReport | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as Partial<ApplyReport>;
    return Array.isArray(value.outcomes) && value.side && value.op ? (value as ApplyReport) : undefined;
  } catch {
    return undefined;
  }
}
