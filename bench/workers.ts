/**
 * Worker benchmarks: the shell worker's orchestration overhead against xargs (and
 * GNU parallel) running the same command over the same items, and the throughput of
 * concurrent http-llm units against a loopback mock that answers after 1 s.
 */
import { execFileSync, fork, spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startMockOpenAI } from '../test/fixtures/mock-openai.js';
import { timeInProcessJob } from './in-process.js';
import { median, spread, type BenchRow } from './table.js';

const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);
const SELF = fileURLToPath(import.meta.url);

/** GNU parallel, installed through apt when it is missing (the bench runs as a user who may). */
function ensureParallel(): string {
  const found = spawnSync('parallel', ['--version'], { encoding: 'utf8' });
  if (found.status === 0) return String(found.stdout).split('\n')[0] ?? 'GNU parallel';
  process.stderr.write('bench: GNU parallel is missing; trying apt-get install -y parallel\n');
  const apt = spawnSync('sh', ['-c', 'apt-get install -y parallel || (apt-get update && apt-get install -y parallel)'], { stdio: 'inherit' });
  const again = spawnSync('parallel', ['--version'], { encoding: 'utf8' });
  if (apt.status !== 0 || again.status !== 0) {
    throw new Error('bench/workers: GNU parallel is required for the shell overhead anchor; install it with `apt-get install -y parallel`');
  }
  return String(again.stdout).split('\n')[0] ?? 'GNU parallel';
}

function abpShell(units: number, concurrency: number): Promise<number> {
  return timeInProcessJob(units, concurrency, { name: 'shell overhead', user_intent: 'nothing', worker_type: 'shell', worker_config: { command: 'true', args: ['{{item.id}}'] } });
}

/** The items, one a line: the same ids the CSV gives abp (1..units). */
const itemIds = (units: number) => Array.from({ length: units }, (_, k) => String(k + 1));

function gnuParallel(units: number, concurrency: number): number {
  const items = itemIds(units);
  const started = performance.now();
  // `:::` with the items as arguments: the same command, the same items, no shell per item beyond parallel's own.
  execFileSync('parallel', ['--will-cite', `-j${concurrency}`, 'true', ':::', ...items], { stdio: 'ignore' });
  return performance.now() - started;
}

/** `xargs -P8 -n1 true` over the same items on stdin: one `true ITEM` per item, 8 at a time, nothing else. */
function xargs(units: number, concurrency: number): number {
  const input = `${itemIds(units).join('\n')}\n`;
  const started = performance.now();
  execFileSync('xargs', [`-P${concurrency}`, '-n1', 'true'], { input, stdio: ['pipe', 'ignore', 'ignore'] });
  return performance.now() - started;
}

/**
 * The floor for any Node program: a bare Node process that starts `true ITEM` for
 * each item with child_process.spawn, `concurrency` at once, and records nothing.
 */
const NODE_SPAWN = `const { spawn } = require('node:child_process');
const [units, concurrency] = process.argv.slice(1).map(Number);
let next = 0;
const lane = () => { if (next >= units) return; const id = String(++next); spawn('true', [id], { stdio: 'ignore' }).on('exit', lane); };
for (let i = 0; i < concurrency; i++) lane();
`;

function nodeSpawn(units: number, concurrency: number): number {
  const started = performance.now();
  execFileSync(process.execPath, ['-e', NODE_SPAWN, String(units), String(concurrency)], { stdio: 'ignore' });
  return performance.now() - started;
}

/**
 * The shell worker against `xargs -P8 -n1 true` over the same items (the floor: a
 * fork and exec per item and nothing else), with GNU parallel as a second anchor,
 * and a bare Node process spawning the same commands as the floor for any Node
 * program. All four run in turn in each round, so drift on a shared machine
 * touches them alike.
 */
export async function shellOverhead(units = 5000, concurrency = 8): Promise<BenchRow> {
  const version = ensureParallel();
  const abp: number[] = [];
  const xa: number[] = [];
  const par: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    abp.push(await abpShell(units, concurrency));
    xa.push(xargs(units, concurrency));
    par.push(gnuParallel(units, concurrency));
    bare.push(nodeSpawn(units, concurrency));
  }
  const overheadMs = abp.map((a, i) => (a - (xa[i] as number)) / units);
  const ratios = abp.map((a, i) => a / (xa[i] as number));
  const parRatios = abp.map((a, i) => a / (par[i] as number));
  const floor = bare.map((b, i) => b / (xa[i] as number));
  const secs = (ms: number[]) => spread(ms.map((x) => x / 1000), 2, ' s');
  return {
    what: `shell worker, ${units.toLocaleString('en')} units of \`true ITEM\` at concurrency ${concurrency}`,
    measure: 'wall time start → COMPLETED (in-process executor, SQLite), and overhead per unit vs xargs',
    figure: `${secs(abp)}; overhead ${spread(overheadMs, 2, ' ms/unit')}`,
    anchor:
      `\`xargs -P${concurrency} -n1 true\` over the same ${units.toLocaleString('en')} items on stdin: ${secs(xa)}; ` +
      `${version}, \`parallel -j${concurrency} true ::: items\`: ${secs(par)} (abp ÷ parallel ${spread(parRatios, 2, '×')}); ` +
      `the floor, a bare Node process spawning the same commands ${concurrency} at once (child_process.spawn, nothing recorded): ${secs(bare)}, ${spread(floor, 2, '×')} xargs; ` +
      'the four interleaved in each run',
    ratio: median(ratios),
    ratio_note: `abp ÷ xargs (${spread(ratios, 2, '×')})`,
    target: '≤ 1.5×',
    raw: { abp_ms: abp, xargs_ms: xa, parallel_ms: par, node_spawn_ms: bare, overhead_ms_per_unit: overheadMs, ratio_vs_parallel: parRatios },
  };
}

/** Runs the 1-second mock in its own process, so it does not share the executor's event loop. */
export async function startMockProcess(delayMs: number): Promise<{ url: string; stop: () => void }> {
  const child = fork(SELF, ['--mock-llm', String(delayMs)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m) => resolve(String(m)));
    child.once('exit', (code) => reject(new Error(`mock server exited with ${code}`)));
  });
  return { url, stop: () => child.kill('SIGKILL') };
}

async function httpRun(units: number, concurrency: number, url: string): Promise<number> {
  const ms = await timeInProcessJob(units, concurrency, {
    name: 'llm throughput',
    user_intent: 'Label the item.',
    worker_type: 'http-llm',
    worker_config: { api: 'openai', base_url: `${url}/v1`, model: 'gpt-4o-mini', api_key_env: null },
  });
  return units / (ms / 1000);
}

/**
 * http-llm units, 500 in flight, against a mock that answers each request after 1 s:
 * the ideal is 500 units/s. Five waves of units, so that the figure is the executor's
 * sustained rate (claim, request, record, claim again), not one cold start.
 */
export async function httpThroughput(units = 2500, concurrency = 500, delayMs = 1000): Promise<BenchRow> {
  const mock = await startMockProcess(delayMs);
  const rates: number[] = [];
  try {
    for (let i = 0; i < RUNS; i++) rates.push(await httpRun(units, concurrency, mock.url));
  } finally {
    mock.stop();
  }
  const ideal = concurrency / (delayMs / 1000);
  return {
    what: `http-llm, ${units.toLocaleString('en')} units, ${concurrency} in flight, mock answers after ${delayMs / 1000} s`,
    measure: 'units per second, start → COMPLETED (one executor, SQLite)',
    figure: spread(rates, 0, ' units/s'),
    anchor: `ideal: ${ideal} units/s (${concurrency} requests always in flight, no overhead)`,
    ratio: median(rates) / ideal,
    ratio_note: `measured ÷ ideal (${spread(rates.map((r) => r / ideal), 2, '×')})`,
    target: '≥ 0.8×',
    raw: { rates },
  };
}

export async function run(): Promise<BenchRow[]> {
  return [await shellOverhead(), await httpThroughput()];
}

// `node dist/bench/workers.js --mock-llm MS`: the mock server process (used by httpThroughput).
// `node dist/bench/workers.js`: runs this suite alone and prints its rows.
if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  if (process.argv[2] === '--mock-llm') {
    const delayMs = Number(process.argv[3] ?? 1000);
    const mock = await startMockOpenAI(() => ({ type: 'text', text: 'label', delayMs, usage: { input_tokens: 40, output_tokens: 2 } }));
    // Keep no log of requests: hundreds of thousands of bodies would only cost memory.
    setInterval(() => mock.requests.splice(0), 1000).unref();
    process.send?.(mock.url);
  } else {
    const rows = await run();
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  }
}
