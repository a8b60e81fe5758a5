/** One row of the benchmark table: a figure, its anchor measured in the same run, and their ratio. */
export interface BenchRow {
  what: string;
  measure: string;
  /** The median of several runs, with the spread (min–max), already formatted with units. */
  figure: string;
  anchor: string;
  /** figure ÷ anchor (or the reverse, as `ratio_note` says), as a number for results.json. */
  ratio: number | null;
  ratio_note: string;
  target?: string;
  raw?: Record<string, unknown>;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function spread(values: number[], digits = 2, unit = ''): string {
  return `${median(values).toFixed(digits)}${unit} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}, n=${values.length})`;
}

/**
 * How long a job ran, by its own clock: RUNNING (started_at) to its end
 * (finished_at). Polling for the end would add up to one poll interval.
 */
export function jobMs(job: { started_at: number | null; finished_at: number | null }): number {
  if (job.started_at === null || job.finished_at === null) throw new Error('bench: the job has not both started and finished');
  return Number(job.finished_at) - Number(job.started_at);
}
