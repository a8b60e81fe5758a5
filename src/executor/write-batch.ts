import type { OutcomeUnit, OutcomeWrite, Repository } from '../store/repository.js';
import type { UnitEventRow } from '../store/schema.js';

interface QueuedOutcome {
  unit: OutcomeUnit;
  write: OutcomeWrite;
  resolve: (written: boolean) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for the executor's hot path. Outcomes, the pids of units that
 * just started and the conversation events of running units queue up during one turn of the event loop and are written in one
 * transaction, so that many short units cost one commit, not one each. Each
 * outcome stays fenced on its own and learns whether it was written; a batch that
 * fails rejects every outcome in it, and each caller retries as it would alone.
 * A unit's events are queued before its outcome, so they land first. A pid is a
 * hint for reaping orphans and events are a record of the conversation: those lost
 * with a failed batch are not written again.
 */
export class WriteBatch {
  private outcomes: QueuedOutcome[] = [];
  private readonly pids = new Map<number, { unit_id: number; attempt: number; pid: number }>();
  private events: Omit<UnitEventRow, 'id'>[] = [];
  private draining = false;

  constructor(
    private readonly repo: Repository,
    private readonly owner: string,
  ) {}

  /** Notes the process a running unit started. */
  pid(unitId: number, attempt: number, pid: number): void {
    this.pids.set(unitId, { unit_id: unitId, attempt, pid });
    this.schedule();
  }

  /** Appends one event of a running unit's conversation. */
  event(row: Omit<UnitEventRow, 'id'>): void {
    this.events.push(row);
    this.schedule();
  }

  /** Writes an outcome with the next batch; resolves to false if it was fenced out. */
  outcome(unit: OutcomeUnit, write: OutcomeWrite): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.outcomes.push({ unit, write, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.draining) return;
    this.draining = true;
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        // Job order, so that concurrent batches of several executors lock job rows alike.
        const outcomes = this.outcomes.sort((a, b) => a.unit.job_id - b.unit.job_id);
        this.outcomes = [];
        const pids = [...this.pids.values()];
        this.pids.clear();
        const events = this.events;
        this.events = [];
        if (outcomes.length === 0 && pids.length === 0 && events.length === 0) return;
        try {
          const written = await this.repo.recordOutcomes(
            outcomes.map((o) => ({ unit: o.unit, owner: this.owner, write: o.write })),
            pids,
            events,
          );
          outcomes.forEach((o, i) => o.resolve(written[i] === true));
        } catch (err) {
          for (const o of outcomes) o.reject(err);
        }
      }
    } finally {
      this.draining = false;
    }
  }
}
