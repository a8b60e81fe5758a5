import type { FailureKind } from '../src/contracts/worker.js';

/**
 * Classifies an agent CLI's failure from what it said (its error field, result
 * text, stderr). The CLIs report these only as text, so this is the one place
 * that reads messages; everything downstream branches on the kind.
 */
export function classifyAgentFailure(text: string, status?: number | null): FailureKind | undefined {
  if (status === 401 || status === 403) return 'auth_failed';
  if (/authentication_failed|not logged in|please run \/login|invalid (x-)?api[ -_]?key|authentication_error|unauthori[sz]ed|oauth token (has )?expired|api key not valid|could not authenticate|login required/i.test(text)) {
    return 'auth_failed';
  }
  if (/usage limit|session limit|weekly limit|\b\d+-hour limit|limit reached|hit your limit|out of credits|credit balance is too low|billing_error|insufficient_quota|exceeded your current quota/i.test(text)) {
    return 'quota_exhausted';
  }
  if (status === 429 || status === 529) return 'rate_limited';
  if (/rate[ _-]?limit|too many requests|overloaded|\b429\b|\b529\b|resource_exhausted/i.test(text)) return 'rate_limited';
  return undefined;
}

/**
 * When a usage limit resets, if the message says: "…limit reached|1735689600"
 * (epoch seconds) or "resets 3pm" / "resets at 14:30" (the next such local time).
 */
export function quotaResetAt(text: string, now = new Date()): number | undefined {
  const epoch = /\|(\d{10})\b/.exec(text);
  if (epoch) return Number(epoch[1]) * 1000;
  const clock = /resets?(?: at)?\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm)?/i.exec(text);
  if (!clock) return undefined;
  let hour = Number(clock[1]);
  const minute = Number(clock[2] ?? 0);
  const half = clock[3]?.toLowerCase();
  if (half === 'pm' && hour < 12) hour += 12;
  if (half === 'am' && hour === 12) hour = 0;
  if (hour > 23 || minute > 59) return undefined;
  const at = new Date(now);
  at.setHours(hour, minute, 0, 0);
  if (at.getTime() <= now.getTime()) at.setDate(at.getDate() + 1);
  return at.getTime();
}
