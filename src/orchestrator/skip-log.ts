import type { SkippedItem } from '../contracts/enumerator.js';
import type { JobEventDraft } from '../store/repository.js';

const KEEP = 100;

/**
 * Collects what an enumerator left out (e.g. malformed CSV rows with on_error:
 * "skip"). The job records them as one `enumeration_skipped` event: the count,
 * and the first few with their line numbers and reasons.
 */
export class SkipLog {
  count = 0;
  readonly first: SkippedItem[] = [];

  readonly add = (skipped: SkippedItem): void => {
    this.count++;
    if (this.first.length < KEEP) this.first.push(skipped);
  };

  events(): JobEventDraft[] {
    return this.count === 0 ? [] : [{ type: 'enumeration_skipped', data: this.summary() }];
  }

  summary() {
    return { count: this.count, first: this.first };
  }
}
