import type { OutcomeUnit, OutcomeWrite, Repository } from '../store/repository.js';
import type { UnitEventRow } from '../store/schema.js';
import { refusesRow } from '../store/tx.js';

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
 * outcome stays fenced on its own and learns whether it was written. A batch the
 * store refuses for one row's values is written again row by row, so that row
 * fails only its own unit (whose caller retries as it would alone) and every
 * other outcome commits. A unit's events are queued before its outcome, so they land first. A
 * pid is a hint for reaping orphans and events are a record of the conversation:
 * those the store refuses are left out.
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
          if (refusesRow(err) && outcomes.length + pids.length + events.length > 1) await this.rowByRow(outcomes, pids, events);
          else for (const o of outcomes) o.reject(err);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  /**
   * A batch the store refused for what a row holds, one transaction per row:
   * only the bad row fails. (A batch that failed for the store itself, down or
   * locked, fails whole, and each outcome's caller backs off and tries again.)
   */
  private async rowByRow(outcomes: QueuedOutcome[], pids: { unit_id: number; attempt: number; pid: number }[], events: Omit<UnitEventRow, 'id'>[]): Promise<void> {
    for (const event of events) await this.repo.recordOutcomes([], [], [event]).catch(() => undefined);
    for (const pid of pids) await this.repo.recordOutcomes([], [pid], []).catch(() => undefined);
    for (const o of outcomes) {
      try {
        const [written] = await this.repo.recordOutcomes([{ unit: o.unit, owner: this.owner, write: o.write }], [], []);
        o.resolve(written === true);
      } catch (err) {
        o.reject(err);
      }
    }
  }
}
