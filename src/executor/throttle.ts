import type { Throttle, ThrottleLimits, ThrottleTicket } from '../contracts/worker.js';

const WINDOW_MS = 60_000;

interface Booking {
  at: number;
  tokens: number;
}

/**
 * Requests-per-minute and tokens-per-minute limits over a sliding one-minute
 * window, one window per key (a worker type). One instance lives in each
 * executor, so every unit of every job shares it.
 */
export class SlidingWindowThrottle implements Throttle {
  private readonly windows = new Map<string, Booking[]>();

  constructor(private readonly now: () => number = Date.now) {}

  async acquire(key: string, limits: ThrottleLimits, tokens: number, signal: AbortSignal): Promise<ThrottleTicket> {
    const rpm = limits.rpm && limits.rpm > 0 ? limits.rpm : undefined;
    const tpm = limits.tpm && limits.tpm > 0 ? limits.tpm : undefined;
    let window = this.windows.get(key);
    if (!window) this.windows.set(key, (window = []));
    for (;;) {
      signal.throwIfAborted();
      const now = this.now();
      while (window.length > 0 && (window[0] as Booking).at <= now - WINDOW_MS) window.shift();
      const waitMs = this.waitFor(window, now, rpm, tpm, tokens);
      if (waitMs <= 0) break;
      await sleep(waitMs, signal);
    }
    const booking: Booking = { at: this.now(), tokens: Math.max(0, tokens) };
    window.push(booking);
    return {
      settle(actual) {
        if (Number.isFinite(actual) && actual >= 0) booking.tokens = actual;
      },
    };
  }

  /** How long until one more request of `tokens` fits; 0 when it fits now. */
  private waitFor(window: Booking[], now: number, rpm: number | undefined, tpm: number | undefined, tokens: number): number {
    let wait = 0;
    if (rpm !== undefined && window.length >= rpm) {
      const freeing = window[window.length - rpm] as Booking;
      wait = Math.max(wait, freeing.at + WINDOW_MS - now);
    }
    if (tpm !== undefined && window.length > 0) {
      // A request larger than the whole budget still runs, alone in an empty window.
      let used = window.reduce((sum, b) => sum + b.tokens, 0);
      const need = Math.min(tokens, tpm);
      for (const b of window) {
        if (used + need <= tpm) break;
        used -= b.tokens;
        wait = Math.max(wait, b.at + WINDOW_MS - now);
      }
    }
    return wait;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, Math.max(1, ms));
    function done() {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
