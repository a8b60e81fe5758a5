import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A two-line CommonJS module preloaded with -r into a measured node process: at
 * exit it writes the process's own peak RSS (VmHWM of /proc/self/status) and its
 * CPU time to the file ABP_BENCH_RSS_FILE names. It costs about 0.3 MB and a
 * millisecond, and both sides of a comparison carry it.
 */
const REPORTER = `const { readFileSync, writeFileSync } = require('node:fs');
process.on('exit', () => {
  const cpu = process.cpuUsage();
  writeFileSync(process.env.ABP_BENCH_RSS_FILE, JSON.stringify({ kb: Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]), cpu_ms: (cpu.user + cpu.system) / 1000 }));
});
`;

/** Writes the reporter into `dir`; returns its path, for `node -r PATH …`. */
export function writeReporter(dir: string): string {
  const path = join(dir, 'report-rss.cjs');
  writeFileSync(path, REPORTER);
  return path;
}

/** What the reporter wrote: peak RSS in MB and CPU time in ms. */
export function readReport(file: string): { mb: number; cpu_ms: number } {
  const { kb, cpu_ms } = JSON.parse(readFileSync(file, 'utf8')) as { kb: number; cpu_ms: number };
  return { mb: kb / 1024, cpu_ms };
}
