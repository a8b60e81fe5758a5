/**
 * A file job at the speed of `find`: `abp create` over a tree of 20,000 and of
 * 100,000 files, as a whole process (spawn → exit, a fresh SQLite database each
 * run), beside `find DIR -type f -printf '%s %T@ %p\n'` over the same tree (a walk
 * that also reads each file's size and mtime, as the file enumerator must).
 * Interleaved, so that drift on a shared machine touches both sides alike; one
 * untimed run of each first, so both meet a warm page cache.
 *
 * Two more anchors are floors for any Node program: a bare script that walks the
 * same tree with readdirSync and one lstatSync a file, keeping each file's path,
 * size and mtime, and stores nothing; and the same script storing each file as a
 * row of a one-index SQLite table. They say how much of abp's time is Node's start,
 * its file system calls and the least storing can cost.
 *
 * The tree is made here, like a source repository: nested folders, a few to a few
 * dozen small text files each.
 *   node dist/bench/files.js        → prints the rows
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_ENTRY } from '../src/executor/launcher.js';
import { PACKAGE_ROOT } from '../src/package-root.js';
import { prng } from '../test/helpers/prng.js';
import { median, spread, type BenchRow } from './table.js';
import { readReport, writeReporter } from './process-report.js';

const RUNS = Number(process.env.ABP_BENCH_FILES_RUNS ?? 5);
const SIZES = (process.env.ABP_BENCH_FILES ?? '20000,100000').split(',').map(Number);


const EXTENSIONS = ['.ts', '.ts', '.ts', '.js', '.json', '.md', '.css', '.txt', '.yml', ''];
const DIR_NAMES = ['src', 'lib', 'test', 'docs', 'components', 'utils', 'api', 'store', 'models', 'views', 'fixtures', 'config'];

/**
 * `total` small files under `root`, folders breadth first: each folder 2 to ~40
 * files (most a handful), 1 to 4 subfolders, at most 9 deep, then more packages
 * under packages/ as the tree needs them. Returns how many folders.
 */
export function makeTree(root: string, total: number, seed = 1): number {
  const rnd = prng(seed);
  const queue: { dir: string; depth: number }[] = [{ dir: root, depth: 0 }];
  let made = 0;
  let folders = 0;
  while (made < total) {
    const next = queue.shift() as { dir: string; depth: number };
    mkdirSync(next.dir, { recursive: true });
    folders++;
    const files = Math.min(total - made, 2 + Math.floor(rnd() * rnd() * 40));
    for (let i = 0; i < files; i++) {
      const ext = EXTENSIONS[Math.floor(rnd() * EXTENSIONS.length)] as string;
      const body = `// file ${made} in ${next.dir.length}\n${'x'.repeat(20 + Math.floor(rnd() * 600))}\n`;
      writeFileSync(join(next.dir, `file_${i}${ext}`), body);
      made++;
    }
    const subdirs = next.depth >= 9 ? 0 : 1 + Math.floor(rnd() * (queue.length < 8 ? 4 : 3));
    for (let i = 0; i < subdirs; i++) {
      queue.push({ dir: join(next.dir, `${DIR_NAMES[Math.floor(rnd() * DIR_NAMES.length)]}_${i}`), depth: next.depth + 1 });
    }
    // Past the depth limit, a new top-level package: a monorepo's packages/ folder.
    if (queue.length === 0) queue.push({ dir: join(root, 'packages', `pkg_${folders}`), depth: 2 });
  }
  return folders;
}

interface Run {
  ms: number;
  mb: number;
}

function findRun(tree: string): Run {
  const started = performance.now();
  const r = spawnSync('find', [tree, '-type', 'f', '-printf', '%s %T@ %p\\n'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - started;
  if (r.status !== 0) throw new Error(`bench: find exited ${r.status}: ${r.stderr}`);
  return { ms, mb: 0 };
}

/**
 * The floor: a bare Node process that walks the tree as the file enumerator must
 * (hidden entries left out), and with a database path, stores each file as a row
 * (one table, one index, one transaction, a prepared INSERT): the least a Node
 * program that keeps the units can do.
 */
const nodeWalk = (sqlite: string) => `const { readdirSync, lstatSync, rmSync } = require('node:fs');
const files = [];
(function walk(dir, rel) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const path = dir + '/' + e.name;
    const relative = rel === '' ? e.name : rel + '/' + e.name;
    if (e.isDirectory()) walk(path, relative);
    else { const s = lstatSync(path); files.push({ file_path: path, relative_path: relative, file_size: s.size, mtime: s.mtimeMs }); }
  }
})(process.argv[2], '');
const dbPath = process.argv[3];
if (dbPath) {
  rmSync(dbPath, { force: true });
  const db = new (require(${JSON.stringify(sqlite)}))(dbPath);
  db.pragma('journal_mode = WAL');
  db.exec('create table units (id integer primary key, job_id integer not null, status text not null, item_id text not null, payload text not null)');
  db.exec('create index units_claim on units (job_id, status, id)');
  const insert = db.prepare("insert into units (job_id, status, item_id, payload) values (1, 'PENDING', ?, ?)");
  db.transaction(() => { for (const f of files) insert.run(f.relative_path, JSON.stringify(f)); })();
  db.close();
}
process.stdout.write(String(files.length));
`;

function nodeWalkRun(tree: string, scratch: string, expected: number, store: boolean): Run {
  const started = performance.now();
  const r = spawnSync(process.execPath, [join(scratch, 'node-walk.cjs'), tree, ...(store ? [join(scratch, 'walk.db')] : [])], { encoding: 'utf8' });
  const ms = performance.now() - started;
  if (r.status !== 0 || Number(r.stdout) !== expected) throw new Error(`bench: the bare Node walk exited ${r.status} with ${r.stdout}: ${r.stderr}`);
  return { ms, mb: 0 };
}

function abpRun(spec: string, scratch: string, expected: number): Run {
  const home = join(scratch, 'home');
  rmSync(home, { recursive: true, force: true });
  const rssFile = join(scratch, 'rss');
  rmSync(rssFile, { force: true });
  const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;
  const started = performance.now();
  const r = spawnSync(process.execPath, ['-r', join(scratch, 'report-rss.cjs'), CLI_ENTRY, 'create', '--spec', spec, '--json'], {
    env: { ...env, ABP_HOME: home, ABP_DB: join(home, 'abp.db'), ABP_BENCH_RSS_FILE: rssFile },
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const ms = performance.now() - started;
  if (r.status !== 0) throw new Error(`bench: abp create exited ${r.status}: ${r.stderr}`);
  const total = (JSON.parse(r.stdout) as { total: number }).total;
  if (total !== expected) throw new Error(`bench: expected ${expected} units, got ${total}`);
  rmSync(home, { recursive: true, force: true });
  return { ms, mb: readReport(rssFile).mb };
}

export async function run(): Promise<BenchRow[]> {
  const scratch = mkdtempSync(join(tmpdir(), 'abp-bench-files-'));
  try {
    writeReporter(scratch);
    writeFileSync(join(scratch, 'node-walk.cjs'), nodeWalk(createRequire(join(PACKAGE_ROOT, 'package.json')).resolve('better-sqlite3')));
    const rows: BenchRow[] = [];
    for (const size of SIZES) {
      const tree = join(scratch, `tree-${size}`);
      const folders = makeTree(tree, size);
      const spec = join(scratch, `job-${size}.json`);
      writeFileSync(
        spec,
        JSON.stringify({ name: `files ${size}`, user_intent: 'bench', enumerator_type: 'file', enumerator_config: { base_directory: tree }, worker_type: 'shell', worker_config: { command: 'true' } }),
      );
      findRun(tree);
      nodeWalkRun(tree, scratch, size, true);
      abpRun(spec, scratch, size);
      const find: Run[] = [];
      const walk: Run[] = [];
      const stored: Run[] = [];
      const abp: Run[] = [];
      for (let i = 0; i < RUNS; i++) {
        find.push(findRun(tree));
        walk.push(nodeWalkRun(tree, scratch, size, false));
        stored.push(nodeWalkRun(tree, scratch, size, true));
        abp.push(abpRun(spec, scratch, size));
      }
      rmSync(tree, { recursive: true, force: true });
      const ratios = abp.map((a, i) => a.ms / (find[i] as Run).ms);
      const floor = walk.map((w, i) => w.ms / (find[i] as Run).ms);
      const storedFloor = stored.map((w, i) => w.ms / (find[i] as Run).ms);
      const ms = (runs: Run[]) => runs.map((r) => r.ms);
      rows.push({
        what: `\`abp create\`, a file job over ${size.toLocaleString('en')} files (${folders.toLocaleString('en')} nested folders)`,
        measure: 'wall time spawn → exit and peak RSS of the whole process, a fresh database each run, warm page cache',
        figure: `${spread(ms(abp), 0, ' ms')}, peak RSS ${spread(abp.map((r) => r.mb), 0, ' MB')}`,
        anchor:
          `\`find DIR -type f -printf '%s %T@ %p\\n'\`, same tree, interleaved: ${spread(ms(find), 0, ' ms')}; ` +
          `the floor, a bare Node walk (readdirSync, lstatSync a file, nothing stored): ${spread(ms(walk), 0, ' ms')}, ${spread(floor, 2, '×')} find; ` +
          `the same walk storing each file as a row (better-sqlite3, one table, one index, one transaction): ${spread(ms(stored), 0, ' ms')}, ${spread(storedFloor, 2, '×')} find`,
        ratio: median(ratios),
        ratio_note: `abp ÷ find (${spread(ratios, 2, '×')})`,
        target: '≤ 3×',
        raw: { abp_ms: ms(abp), abp_rss_mb: abp.map((r) => r.mb), find_ms: ms(find), node_walk_ms: ms(walk), node_walk_store_ms: ms(stored), folders },
      });
    }
    return rows;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const row of await run()) process.stdout.write(`${JSON.stringify(row)}\n`);
}
