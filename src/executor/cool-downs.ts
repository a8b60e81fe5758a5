/**
 * Per worker type cool-downs after a rate limit (429, 529, overloaded): while one
 * is active the executor claims no units of that type and the pool holds back the
 * ones it already claimed, so one unit's 429 slows every unit of that type.
 */
export class CoolDowns {
  private readonly until = new Map<string, number>();
  private readonly strikes = new Map<string, number>();

  constructor(
    private readonly backoff: (strikes: number) => number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Records a rate limit and returns the cool-down it starts: the server's own
   * delay when it gave one, otherwise a backoff that grows with consecutive hits.
   */
  hit(key: string, retryAfterMs: number | undefined): number {
    const strikes = (this.strikes.get(key) ?? 0) + 1;
    this.strikes.set(key, strikes);
    const ms = retryAfterMs !== undefined && retryAfterMs >= 0 ? retryAfterMs : this.backoff(strikes);
    const until = this.now() + ms;
    this.until.set(key, Math.max(this.until.get(key) ?? 0, until));
    return ms;
  }

  /**
   * A cool-down another executor started (shared through the database): this
   * executor waits it out too, without counting a strike of its own.
   */
  adopt(key: string, until: number): void {
    if (until > (this.until.get(key) ?? 0)) this.until.set(key, until);
  }

  /** A success ends the escalation (the active cool-down still runs out). */
  recovered(key: string): void {
    this.strikes.delete(key);
  }

  remainingMs(key: string): number {
    return Math.max(0, (this.until.get(key) ?? 0) - this.now());
  }

  /** Resolves once `key` is not cooling down; rejects when `signal` aborts first. */
  async wait(key: string, signal: AbortSignal): Promise<void> {
    for (let ms = this.remainingMs(key); ms > 0; ms = this.remainingMs(key)) {
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        }, ms);
        const onAbort = () => {
          clearTimeout(timer);
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
      });
    }
  }
}
