import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { App } from '../app.js';
import { JOB_STATES, UNIT_STATES } from '../domain/states.js';

/** Pages of unit outcomes read per scrape, so a scrape after a long gap stays cheap; the rest follow on later scrapes. */
const TAIL_PAGES_PER_SCRAPE = 20;

/**
 * Prometheus metrics. Counts, cost, tokens and heartbeats are read from the
 * database on each scrape (it is the truth, shared by every executor). Unit
 * durations and worker errors are fed from the events table, tailed by seq, so
 * each outcome is counted once per server, whichever executor recorded it. HTTP
 * timings are this server's own.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly jobs: Gauge<'state'>;
  private readonly units: Gauge<'state'>;
  private readonly cost: Counter;
  private readonly tokens: Counter<'direction'>;
  private readonly durations: Histogram;
  private readonly outcomes: Counter<'status'>;
  private readonly errors: Counter<'kind'>;
  private readonly heartbeat: Gauge<'executor' | 'hostname'>;
  private readonly executors: Gauge;
  readonly http: Histogram<'method' | 'route' | 'status'>;
  private tailSeq = 0;
  private scraping: Promise<string> | undefined;

  constructor(private readonly app: App) {
    const registers = [this.registry];
    this.jobs = new Gauge({ name: 'abp_jobs', help: 'Jobs by state.', labelNames: ['state'], registers });
    this.units = new Gauge({ name: 'abp_units', help: 'Work units by state, over every job.', labelNames: ['state'], registers });
    this.cost = new Counter({ name: 'abp_cost_usd_total', help: 'US dollars spent by every unit of every job.', registers });
    this.tokens = new Counter({ name: 'abp_tokens_total', help: 'Model tokens used by every job.', labelNames: ['direction'], registers });
    this.durations = new Histogram({
      name: 'abp_unit_duration_seconds',
      help: 'Wall-clock time of finished unit attempts (succeeded or failed).',
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    });
    this.outcomes = new Counter({ name: 'abp_unit_outcomes_total', help: 'Recorded unit attempt outcomes by the state the unit moved to.', labelNames: ['status'], registers });
    this.errors = new Counter({ name: 'abp_worker_errors_total', help: 'Failed unit attempts by error kind (retryable, rate_limited, permanent, ...).', labelNames: ['kind'], registers });
    this.heartbeat = new Gauge({ name: 'abp_executor_heartbeat_age_seconds', help: 'Seconds since each registered executor last sent a heartbeat.', labelNames: ['executor', 'hostname'], registers });
    this.executors = new Gauge({ name: 'abp_executors', help: 'Registered executors, live or stale.', registers });
    this.http = new Histogram({
      name: 'abp_http_request_duration_seconds',
      help: 'HTTP requests served, by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
  }

  /** The exposition text. Concurrent scrapes share one database read. */
  async scrape(): Promise<string> {
    this.scraping ??= this.refresh()
      .then(() => this.registry.metrics())
      .finally(() => {
        this.scraping = undefined;
      });
    return this.scraping;
  }

  private async refresh(): Promise<void> {
    const monitor = this.app.orchestrator.monitor;
    const { jobs, totals, executors } = await monitor.gauges();
    for (const state of JOB_STATES) this.jobs.set({ state }, jobs[state] ?? 0);
    for (const state of UNIT_STATES) this.units.set({ state }, totals[state.toLowerCase() as keyof typeof totals]);
    this.cost.reset();
    this.cost.inc(totals.cost_usd);
    this.tokens.reset();
    this.tokens.inc({ direction: 'input' }, totals.input_tokens);
    this.tokens.inc({ direction: 'output' }, totals.output_tokens);
    this.heartbeat.reset();
    for (const e of executors) this.heartbeat.set({ executor: e.id, hostname: e.hostname }, e.heartbeat_age_seconds);
    this.executors.set(executors.length);

    for (let page = 0; page < TAIL_PAGES_PER_SCRAPE; page++) {
      const tail = await monitor.unitOutcomesAfter(this.tailSeq);
      for (const o of tail.outcomes) {
        this.outcomes.inc({ status: o.status });
        if (o.error_kind) this.errors.inc({ kind: o.error_kind });
        if ((o.status === 'SUCCEEDED' || o.status === 'FAILED') && o.duration_ms !== null) this.durations.observe(o.duration_ms / 1000);
      }
      this.tailSeq = tail.last_seq;
      if (tail.complete) break;
    }
  }
}
