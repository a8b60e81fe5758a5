import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ROOT } from '../helpers/cli.js';
import { queryPostgres } from '../helpers/postgres.js';
import { KEY, SseClient } from '../helpers/serve.js';
import type { Bench, Group, Seen } from './bench.js';

/**
 * The bad-input catalogue: every row is one bad input, the exact error a user
 * sees for it, and a trigger that produces it against the real product. The
 * table in docs/bad-inputs.md is rendered from these rows (render.ts, checked by
 * doc.test.ts), and the other tests here run every trigger (run-rows.ts), so the
 * two cannot drift apart.
 *
 * In `error`, <dir> is the folder that holds the row's input files, <job> a job
 * id, <url> the mock LLM API's base URL, <pgid> a unit's process group, <port>
 * the server's port and <root> the checkout: what differs from run to run.
 * Everything else is compared exactly.
 */

export const SURFACES = ['CLI', 'MCP', 'HTTP', 'enumerator', 'worker', 'sync'] as const;
export type Surface = (typeof SURFACES)[number];

export interface Row {
  surface: Surface;
  /** Which bench the trigger runs on; rows of a group share one, in this order. */
  group: Group;
  /** The bad input, and where it goes in (Markdown). */
  input: string;
  /** The message the user sees, exactly (its first line, when the signal says more follows). */
  error: string;
  /** How it is signalled: exit code, HTTP status and code, MCP isError, or the unit's state. */
  signal: string;
  /** What is kept, and what is not lost. */
  kept: string;
  trigger(b: Bench): Promise<Seen>;
}

// ---- shared inputs ----------------------------------------------------------

const okCsv = (b: Bench) => b.write('ok.csv', 'id,text\na,alpha\nb,beta\n');

/** `abp create` flags for a valid CSV + shell job, so that a row's one bad flag is the only error. */
const csvShell = (b: Bench, ...extra: string[]) => ['--enumerator', 'csv', '-e', `file_path=${okCsv(b)}`, '--worker', 'shell', '-w', 'command=true', ...extra];

/** A valid JobSpec; a row overrides the one field it gets wrong. */
const spec = (b: Bench, fields: Record<string, unknown> = {}) => ({
  name: 'bad',
  user_intent: 'x',
  enumerator_type: 'csv',
  enumerator_config: { file_path: okCsv(b) },
  worker_type: 'shell',
  worker_config: { command: 'true' },
  ...fields,
});

const sqlSpec = (b: Bench, query: string, connection = sqliteDb(b)) => spec(b, { enumerator_type: 'sql', enumerator_config: { connection_string: connection, query } });

/** A SQLite file with a table `t(id, name)` of two rows. */
function sqliteDb(b: Bench): string {
  const path = `${b.dir}/data.db`;
  const db = new Database(path);
  db.exec("create table if not exists t (id integer primary key, name text); insert or ignore into t values (1, 'a'), (2, 'b')");
  db.close();
  return path;
}

/** The state of the SQL rows' SQLite file: its rows, its user_version and the databases it has attached. */
function sqliteState(b: Bench): string {
  const db = new Database(`${b.dir}/data.db`, { readonly: true });
  try {
    const rows = (db.prepare('select count(*) n from t').get() as { n: number }).n;
    return `${rows} rows, user_version ${db.pragma('user_version', { simple: true })}`;
  } finally {
    db.close();
  }
}

/** A SQL row's trigger: the database must be as it was (two rows, user_version 0). */
async function sqliteUnchanged(b: Bench, query: string): Promise<Seen> {
  const seen = await createHttp(b, sqlSpec(b, query));
  const state = sqliteState(b);
  if (state !== '2 rows, user_version 0') throw new Error(`the database changed: ${state}`);
  return seen;
}

/** Files in a folder. */
const filesIn = (folder: string) => readdirSync(folder).length;

/** A job created over the CLI; its id. */
async function cliJob(b: Bench): Promise<number> {
  return (await b.sb.ok(['create', '--name', 'ok', '--intent', 'x', ...csvShell(b)])).job_id;
}

/** Checks a job's state after a refused move: the refusal changed nothing. */
async function stays(b: Bench, job: number, status: string): Promise<void> {
  const [row] = await b.sb.query<{ status: string }>('select status from jobs where id = ?', job);
  if (row?.status !== status) throw new Error(`job ${job} is ${row?.status}, expected it to stay ${status}`);
}

const createHttp = (b: Bench, body: unknown) => b.nothingCreated(() => b.http('/jobs', { method: 'POST', body }));

/** A sync JobSpec for `POST /jobs`, from `type:path` sides; the pair is named `docs`. */
function syncSpec(source: string, target: string, fields: Record<string, unknown> = {}) {
  const side = (text: string) => {
    const [type, path] = text.split(/:(.*)/s) as [string, string];
    return { type, path };
  };
  return { sync: { pair: 'docs', source: side(source), target: side(target), ...fields } };
}

/** The line `abp sync plan` prints to explain a guard, with the plan's first line and the count of held writes as the signal. */
async function guardLines(b: Bench, args: string[]): Promise<Seen> {
  const r = await b.sb.cli(['sync', 'plan', ...args]);
  if (r.exitCode !== 0) throw new Error(`abp sync plan failed: ${r.stderr}`);
  const lines = r.stdout.split('\n');
  const guard = lines.find((l) => l.startsWith('guard '));
  if (guard === undefined) throw new Error(`no guard line in: ${r.stdout}`);
  const blocked = lines.filter((l) => l.startsWith('  blocked ')).length;
  return { error: guard, signal: `exit 0; ${lines[0]}; ${blocked} blocked lines` };
}

/** Files f01.txt … under `<dir>/folder`; returns the folder. */
function numbered(b: Bench, folder: string, from: number, to: number): string {
  for (let i = from; i <= to; i++) b.write(`${folder}/f${String(i).padStart(2, '0')}.txt`, `file ${i}\n`);
  return `${b.dir}/${folder}`;
}

/**
 * The processes of a group that still run. A killed process stays a zombie until
 * its parent (or init) reaps it, and kill(-pgid, 0) still finds it, so /proc is read instead.
 */
function runningInGroup(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so read after the last ')'.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') pids.push(Number(entry));
  }
  return pids;
}

/** Three CSV rows, a, b and c, for worker jobs in which only b fails. */
const abc = (b: Bench) => b.write('abc.csv', 'id,text\na,alpha\nb,beta\nc,gamma\n');
const items = (b: Bench) => ({ enumerator_type: 'csv', enumerator_config: { file_path: abc(b), id_column: 'id' } });

/** A shell job whose command runs `failure` for item b only, and echoes the others. */
const shellFailingB = (b: Bench, failure: string, fields: Record<string, unknown> = {}) => ({
  ...items(b),
  worker_type: 'shell',
  worker_config: { command: 'sh', args: ['-c', `if [ "$1" = b ]; then ${failure}; fi; echo "$1"`, 'sh', '{{item.id}}'] },
  ...fields,
});

/** An http-llm job against the mock LLM; the model name says how the mock fails item b. */
const llmSpec = (b: Bench, model: string, fields: Record<string, unknown> = {}) => ({
  ...items(b),
  worker_type: 'http-llm',
  worker_config: { api: 'openai', base_url: b.llmUrl, model, api_key_env: 'CATALOGUE_LLM_KEY' },
  ...fields,
});

/**
 * Runs a worker job over items a, b and c and checks that only b FAILED, after
 * `attempts` attempts, while a and c SUCCEEDED: a unit's failure harms no other.
 * Returns b's error, and its state and failure kind as the signal.
 */
async function onlyB(b: Bench, spec: Record<string, unknown>, attempts = 1): Promise<Seen & { unit: any; job: any }> {
  const { job, units } = await b.run(spec);
  const failed = units.filter((u) => u.status === 'FAILED');
  const ok = units.filter((u) => u.status === 'SUCCEEDED').map((u) => u.item_id);
  const unit = failed[0];
  if (job.status !== 'FAILED' || failed.length !== 1 || unit.item_id !== 'b' || ok.join() !== 'a,c') {
    throw new Error(`expected only item b to fail: ${JSON.stringify({ status: job.status, units })}`);
  }
  if (unit.failures !== attempts) throw new Error(`item b spent ${unit.failures} attempts, expected ${attempts}`);
  return { error: unit.error, signal: `unit FAILED (${unit.error_kind})`, unit, job, vars: b.llm ? { url: b.llmUrl } : {} };
}

/** One unit with its payload, prompt, output and stderr tail. */
const unitDetail = (b: Bench, unit: { job_id: number; unit_id: number }) => b.ok(`/jobs/${unit.job_id}/units/${unit.unit_id}`);

/** A job that must end PAUSED by item b: a and c SUCCEEDED, b waits PENDING, and its status_reason is what the user sees. */
async function pausedByB(b: Bench, body: Record<string, unknown>): Promise<Seen> {
  const { job, units } = await b.run(body);
  const byItem = Object.fromEntries(units.map((u) => [u.item_id, u]));
  if (job.status !== 'PAUSED' || byItem.b?.status !== 'PENDING' || byItem.b?.failures !== 0 || byItem.a?.status !== 'SUCCEEDED' || byItem.c?.status !== 'SUCCEEDED') {
    throw new Error(`expected a PAUSED job with b PENDING and unspent: ${JSON.stringify({ job, units })}`);
  }
  return { error: job.status_reason, signal: 'job PAUSED', vars: { url: b.llmUrl } };
}

/** The catalogue's function-worker module: item b throws, the others succeed. */
const FAILS_ON_B = `${ROOT}/test/catalogue/fails-on-b.mjs`;

// ---- the rows ---------------------------------------------------------------

export const ROWS: Row[] = [
  // CLI: flags, arguments and spec files, on a spawned `abp`.
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp create --nmae x` (a misspelt flag)',
    error: "unknown option '--nmae'",
    signal: 'exit 2, usage follows', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['create', '--nmae', 'x'])),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp frobnicate` (an unknown command)',
    error: 'unknown command "frobnicate"; run abp --help for the list',
    signal: 'exit 2', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['frobnicate'])),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp status` without its JOB argument',
    error: 'missing argument JOB (a job id)',
    signal: 'exit 2', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['status'])),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp status abc` (a job id that is not a number)',
    error: 'JOB: expected a positive integer, got "abc"',
    signal: 'exit 2', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['status', 'abc'])),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp status 99` (a job that does not exist)',
    error: 'job 99 does not exist',
    signal: 'exit 1', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['status', '99'])),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp create … --max-workers lots`',
    error: '--max-workers: expected an integer >= 1, got "lots"',
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create([...csvShell(b), '--max-workers', 'lots']),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: "`abp create … -w 'args:=[oops'` (a `KEY:=JSON` value that is not JSON)",
    error: '--work: args:= expects JSON, got "[oops" (Unexpected token \'o\', "[oops" is not valid JSON); use args=VALUE for text',
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create([...csvShell(b), '-w', 'args:=[oops']),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp create … --output-schema FILE` whose `pattern` needs lookahead (`(?=a)b`), which a linear-time matcher cannot run',
    error: 'output_schema: not a valid JSON Schema: pattern "(?=a)b" cannot be used: abp matches patterns in linear time (RE2), without lookaround or backreferences (error parsing regexp: invalid or unsupported Perl syntax: `(?=`)',
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create([...csvShell(b), '--output-schema', b.write('lookahead.json', JSON.stringify({ type: 'object', properties: { s: { type: 'string', pattern: '(?=a)b' } } }))]),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp create … -e noequals` (a config flag without `=`)',
    error: '--enum: expected KEY=VALUE or KEY:=JSON, got "noequals"',
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create([...csvShell(b), '-e', 'noequals']),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp create --spec` naming a file that does not exist',
    error: "--spec: cannot read <dir>/nope.json: ENOENT: no such file or directory, open '<dir>/nope.json'",
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create(['--spec', `${b.dir}/nope.json`]),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp create --spec` with a file that is not JSON',
    error: "--spec: <dir>/broken.json is not valid JSON: Expected property name or '}' in JSON at position 1",
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create(['--spec', b.write('broken.json', '{name: "x"}')]),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp create --spec` with a JSON array instead of a JobSpec object',
    error: '--spec: expected a JSON object, got an array',
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create(['--spec', b.write('array.json', JSON.stringify([spec(b)]))]),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp create --spec` with an unknown JobSpec field (`max_workrs`)',
    error: 'unknown field: max_workrs',
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create(['--spec', b.write('typo.json', JSON.stringify(spec(b, { max_workrs: 2 })))]),
  },
  {
    surface: 'CLI', group: 'cli-flags',
    input: '`abp start JOB --approve` on a job whose test unit never ran (an illegal state move)',
    error: 'job <job> is CREATED; cannot approve (allowed from TESTING). Start it with abp start <job>.',
    signal: 'exit 1', kept: 'the job stays CREATED; no unit runs',
    trigger: async (b) => {
      const job = await cliJob(b);
      const seen = await b.cli(['start', String(job), '--approve']);
      await stays(b, job, 'CREATED');
      return { ...seen, vars: { job } };
    },
  },

  // Enumerators, through `abp create`: the enumeration streams into one transaction, so nothing is left behind.
  {
    surface: 'CLI', group: 'cli-inputs',
    input: 'a results folder where one item’s file should be holds a folder (`abp results JOB --sink dir:PATH`, with `PATH/1.txt/` made beforehand)',
    error: '1 of 2 units could not be written to dir <dir>/out; the report lists each with why',
    signal: 'exit 1',
    kept: 'the report on stdout lists `unit 1 (item "1"): 1.txt is a folder; the item\'s file cannot replace it`; item 2 is written; the folder in the way is untouched',
    trigger: async (b) => {
      const job = (await b.sb.ok(['create', '--name', 'sink', '--intent', 'x', '--enumerator', 'csv', '-e', `file_path=${okCsv(b)}`, '--worker', 'shell', '-w', 'command=echo', '-w', 'args:=["{{item.text}}"]'])).job_id;
      await b.sb.ok(['start', String(job), '--skip-test']);
      await b.sb.waitFor(job, (s) => s.status === 'COMPLETED', 30_000);
      const out = join(b.dir, 'out');
      mkdirSync(join(out, '1.txt'), { recursive: true });
      const seen = await b.cli(['results', String(job), '--sink', `dir:${out}`]);
      if (readFileSync(join(out, '2.txt'), 'utf8') !== 'beta' || readdirSync(join(out, '1.txt')).length !== 0) throw new Error('item 2 was not written, or the folder in the way was changed');
      return seen;
    },
  },
  {
    surface: 'enumerator', group: 'cli-inputs',
    input: 'CSV with an unclosed quote on line 3 (`abp create`)',
    error: 'csv <dir>/unclosed.csv: line 3: malformed row: Quote Not Closed: the parsing is finished with an opening quote',
    signal: 'exit 1', kept: 'no job is created; the rows before line 3 are not kept either',
    trigger: (b) => b.create(['--enumerator', 'csv', '-e', `file_path=${b.write('unclosed.csv', 'id,text\n1,fine\n2,"unclosed\n')}`, '--worker', 'shell', '-w', 'command=true']),
  },
  {
    surface: 'enumerator', group: 'cli-inputs',
    input: 'CSV that is only a byte order mark and a header (`abp create`)',
    error: 'csv <dir>/header-only.csv: the enumeration produced no items; no job was created',
    signal: 'exit 1', kept: 'no job is created (an empty job is never made)',
    trigger: (b) => b.create(['--enumerator', 'csv', '-e', `file_path=${b.write('header-only.csv', '\uFEFFid,text\n')}`, '--worker', 'shell', '-w', 'command=true']),
  },
  {
    surface: 'enumerator', group: 'cli-inputs',
    input: 'CSV `id_column` that is not a column (`abp create … -e id_column=key`)',
    error: 'enumerator_config.id_column: "key" is not a column of <dir>/ok.csv (columns: id, text)',
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create([...csvShell(b), '-e', 'id_column=key']),
  },
  {
    surface: 'enumerator', group: 'cli-inputs',
    input: 'a file glob that climbs out of `base_directory` (`-e pattern=../*.csv`)',
    error: 'enumerator_config.pattern: "../*.csv" leaves base_directory; use a relative glob without ".."',
    signal: 'exit 2', kept: 'no job is created',
    trigger: (b) => b.create(['--enumerator', 'file', '-e', `base_directory=${numbered(b, 'docs', 1, 2)}`, '-e', 'pattern=../*.csv', '--worker', 'shell', '-w', 'command=true']),
  },
  {
    surface: 'enumerator', group: 'cli-inputs',
    input: 'a huge item: a CSV row of just over 1 MiB, second of two (`abp create`)',
    error: 'item 2 (_id "b") is 1048621 bytes; one item may be at most 1048576 bytes',
    signal: 'exit 2', kept: 'no job is created; item 1 is not kept either',
    trigger: (b) =>
      b.create(['--enumerator', 'csv', '-e', `file_path=${b.write('big.csv', `id,text\na,small\nb,${'x'.repeat(1024 * 1024)}\n`)}`, '-e', 'id_column=id', '--worker', 'shell', '-w', 'command=true']),
  },
  {
    surface: 'enumerator', group: 'cli-inputs',
    input: 'dynamic enumerator code that throws after one item, once a person approved it (`abp approve JOB --code-sha256 …`)',
    error: 'dynamic code threw after 1 items: Error: boom at row 2',
    signal: 'exit 1, stack follows', kept: 'the job stays CREATED, pending approval, with no units',
    trigger: async (b) => {
      const code = 'export default async function* () { yield { a: 1 }; throw new Error("boom at row 2"); }';
      const pending = await b.sb.ok(['create', '--name', 'dyn', '--intent', 'x', '--enumerator', 'dynamic', '-e', `code=${code}`, '--worker', 'shell', '-w', 'command=true']);
      const before = await b.stored();
      const seen = await b.cli(['approve', String(pending.job_id), '--code-sha256', pending.approval.code_sha256]);
      if ((await b.stored()).units !== before.units) throw new Error('units were inserted');
      const [row] = await b.sb.query<{ status_reason: string }>('select status_reason from jobs where id = ?', pending.job_id);
      if (row?.status_reason !== 'pending_approval') throw new Error(`the job is no longer pending approval: ${row?.status_reason}`);
      return seen;
    },
  },

  // Workers: a mistake caught before any unit runs.
  {
    surface: 'worker', group: 'cli-inputs',
    input: 'a shell `args` template naming a CSV column that does not exist (`-w \'args:=["{{item.titel}}"]\'`)',
    error: 'worker_config: {{item.titel}} names a field that no item has (item 1 has id, text, _row_index, _id); no job was created',
    signal: 'exit 2', kept: 'no job is created (before, every unit ran with an empty argument)',
    trigger: (b) => b.create(['--enumerator', 'csv', '-e', `file_path=${okCsv(b)}`, '--worker', 'shell', '-w', 'command=echo', '-w', 'args:=["{{item.titel}}"]']),
  },

  // Sync: `abp sync plan|run`. A dry run writes nothing; a failed plan keeps the pair's baseline.
  {
    surface: 'sync', group: 'cli-inputs',
    input: '`abp sync plan --source ftp:/x …` (an unknown provider)',
    error: '--source: expected dir:PATH, jsonl:PATH, json:PATH, csv:PATH, sqlite:PATH#TABLE, postgres://…#TABLE or a JSON object, got "ftp:/x"',
    signal: 'exit 2', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['sync', 'plan', '--source', 'ftp:/x', '--target', `dir:${b.dir}/out`])),
  },
  {
    surface: 'sync', group: 'cli-inputs',
    input: '`--target sqlite:out.db` without the `#TABLE`',
    error: '--target: a sqlite provider needs the table after #, e.g. sqlite:data.db#items',
    signal: 'exit 2', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['sync', 'plan', '--source', `jsonl:${b.dir}/in.jsonl`, '--target', `sqlite:${b.dir}/out.db`])),
  },
  {
    surface: 'sync', group: 'cli-inputs',
    input: '`abp sync plan` with a `--source` but no `--target`',
    error: 'a sync needs --source and --target (or a --spec file with both)',
    signal: 'exit 2', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['sync', 'plan', '--source', `dir:${b.dir}/docs`])),
  },
  {
    surface: 'sync', group: 'cli-inputs',
    input: '`abp sync frob` (an unknown subcommand)',
    error: 'sync: expected a subcommand, one of run, plan, status; got "frob"',
    signal: 'exit 2', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['sync', 'frob'])),
  },
  {
    surface: 'sync', group: 'cli-inputs',
    input: '`abp sync status nopair` (a pair that does not exist)',
    error: 'sync pair "nopair" does not exist; abp sync status lists the pairs',
    signal: 'exit 1', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.cli(['sync', 'status', 'nopair'])),
  },
  {
    surface: 'sync', group: 'cli-inputs',
    input: 'a suspect snapshot: after a synced run of 30 files, the source folder reads empty (`abp sync plan`)',
    error: 'guard suspect_snapshot: the source shrank from 30 to 0 items, which looks like a broken read; its 30 removes are held (-o allow_mass_delete=true lets a deletion you mean through)',
    signal: 'exit 0; dry run, nothing written: +0 ~0 −0 unresolved 0 blocked 30; 30 blocked lines', kept: 'all 30 target files',
    trigger: async (b) => {
      const source = numbered(b, 'mirror-src', 1, 30);
      mkdirSync(`${b.dir}/mirror-dst`);
      const pair = ['--source', `dir:${source}`, '--target', `dir:${b.dir}/mirror-dst`, '--pair', 'mirror'];
      await b.sb.ok(['sync', 'run', ...pair, '--skip-test', '--wait', '60']);
      for (let i = 1; i <= 30; i++) rmSync(`${source}/f${String(i).padStart(2, '0')}.txt`);
      const seen = await guardLines(b, pair);
      if (filesIn(`${b.dir}/mirror-dst`) !== 30) throw new Error('target files were removed');
      return seen;
    },
  },
  {
    surface: 'sync', group: 'cli-inputs',
    input: 'a mass delete: 4 of the 30 synced files go from the source, over `max_delete_ratio` 0.1 (`abp sync plan`)',
    error: 'guard mass_delete: 4 of the 30 items in the target would be removed, over max_delete_ratio 0.1; none is removed (-o allow_mass_delete=true lets a deletion you mean through)',
    signal: 'exit 0; dry run, nothing written: +0 ~0 −0 unresolved 0 blocked 4; 4 blocked lines', kept: 'all 30 target files',
    trigger: async (b) => {
      numbered(b, 'mirror-src', 5, 30);
      const seen = await guardLines(b, ['--source', `dir:${b.dir}/mirror-src`, '--target', `dir:${b.dir}/mirror-dst`, '--pair', 'mirror']);
      if (filesIn(`${b.dir}/mirror-dst`) !== 30) throw new Error('target files were removed');
      return seen;
    },
  },

  // HTTP: `abp serve`, real requests.
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /mcp` with a body that is not JSON (`not json`)',
    error: 'Parse error: request body is not JSON: Unexpected token \'o\', "not json" is not valid JSON',
    signal: 'HTTP 400 -32700',
    kept: 'a JSON-RPC error with `id: null` (the client does not wait for ever); no session is made',
    trigger: (b) => b.nothingChanges(() => b.http('/mcp', { method: 'POST', body: 'not json', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' } })),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /mcp` with a JSON-RPC batch (an array of requests)',
    error: 'Invalid Request: JSON-RPC batches are not supported (MCP 2025-06-18 removed batching); send each message on its own',
    signal: 'HTTP 400 -32600',
    kept: 'nothing in the batch runs; `abp mcp` on stdio answers each request of a batch under its own id',
    trigger: (b) =>
      b.nothingChanges(() =>
        b.http('/mcp', {
          method: 'POST',
          body: [{ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { jsonrpc: '2.0', id: 2, method: 'tools/list' }],
          headers: { accept: 'application/json, text/event-stream' },
        }),
      ),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`GET /jobs` without an API key',
    error: 'missing or wrong API key: send Authorization: Bearer <key> or x-api-key (the key is in ABP_API_KEY or $ABP_HOME/api-key)',
    signal: 'HTTP 401 unauthorized', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.http('/jobs', { key: false })),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`GET /jobs` with a wrong API key',
    error: 'missing or wrong API key: send Authorization: Bearer <key> or x-api-key (the key is in ABP_API_KEY or $ABP_HOME/api-key)',
    signal: 'HTTP 401 unauthorized', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.http('/jobs', { key: `${KEY}x` })),
  },
  {
    surface: 'HTTP', group: 'http',
    input: 'a foreign `Host` header (DNS rebinding)',
    error: 'host "evil.example:<port>" is not allowed; set ABP_ALLOWED_HOSTS to add it',
    signal: 'HTTP 403 forbidden_host', kept: 'nothing changes',
    trigger: async (b) => ({ ...(await b.nothingChanges(() => b.http('/jobs', { headers: { host: `evil.example:${b.serve?.port}` } }))), vars: { port: b.serve?.port ?? 0 } }),
  },
  {
    surface: 'HTTP', group: 'http',
    input: 'a foreign `Origin` header, even with the right key',
    error: 'origin "http://evil.example" is not allowed; set ABP_CORS_ORIGINS to add it',
    signal: 'HTTP 403 forbidden_origin', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.http('/jobs', { headers: { origin: 'http://evil.example' } })),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`GET /jobz` (an unknown route)',
    error: 'no route for GET /jobz',
    signal: 'HTTP 404 not_found', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.http('/jobz')),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`PUT /jobs` (a method the route does not take)',
    error: 'PUT is not allowed on /jobs; use POST or GET',
    signal: 'HTTP 405 method_not_allowed', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.http('/jobs', { method: 'PUT', body: {} })),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /jobs` with a body that is not JSON',
    error: "request body is not JSON: Expected property name or '}' in JSON at position 1",
    signal: 'HTTP 400 invalid_json', kept: 'no job is created',
    trigger: (b) => createHttp(b, '{name: "x"}'),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /jobs` with a body over `ABP_MAX_BODY_BYTES` (4096 here)',
    error: 'request body over 4096 bytes; the limit is ABP_MAX_BODY_BYTES',
    signal: 'HTTP 413 payload_too_large', kept: 'no job is created',
    trigger: (b) => createHttp(b, { ...spec(b), user_intent: 'x'.repeat(5000) }),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /jobs` with a JSON array instead of a JobSpec',
    error: '(root): Invalid input: expected object, received array',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, [spec(b)]),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /jobs` with a wrong type (`"max_workers": "four"`)',
    error: 'max_workers: Invalid input: expected number, received string',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { max_workers: 'four' })),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /jobs` with a negative concurrency (`"max_workers": -2`)',
    error: 'max_workers: Too small: expected number to be >=1',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { max_workers: -2 })),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /jobs` with a per-unit cap for a worker that cannot enforce one (`"max_cost_per_unit_usd": 0.5` on a shell job)',
    error: "max_cost_per_unit_usd: the shell worker cannot stop a unit at a cost (only claude can); use max_cost_usd for the job's budget",
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { max_cost_per_unit_usd: 0.5 })),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /jobs` with an unknown worker type',
    error: 'worker_type: unknown type "gpt"; expected one of shell, claude, agent-cli, http-llm, function, sync-apply',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { worker_type: 'gpt' })),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`GET /jobs?limt=5` (a misspelt query parameter)',
    error: 'unknown field in query: limt',
    signal: 'HTTP 400 invalid_input', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.http('/jobs?limt=5')),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`GET /jobs/abc` (an id that is not a number)',
    error: 'id: expected a positive integer, got "abc"',
    signal: 'HTTP 400 invalid_input', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.http('/jobs/abc')),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`GET /jobs/99` (a job that does not exist)',
    error: 'job 99 does not exist',
    signal: 'HTTP 404 not_found', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.http('/jobs/99')),
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /jobs/{id}/start` with a misspelt field (`{"aprove": true}`)',
    error: 'unknown field in body: aprove',
    signal: 'HTTP 400 invalid_input', kept: 'the job stays CREATED',
    trigger: async (b) => {
      const job = (await b.ok('/jobs', { method: 'POST', body: spec(b) })).job_id;
      const seen = await b.http(`/jobs/${job}/start`, { method: 'POST', body: { aprove: true } });
      await stays(b, job, 'CREATED');
      return seen;
    },
  },
  {
    surface: 'HTTP', group: 'http',
    input: '`POST /jobs/{id}/pause` on a CREATED job (an illegal state move)',
    error: 'job <job> is CREATED; cannot pause (allowed from RUNNING)',
    signal: 'HTTP 409 illegal_transition', kept: 'the job stays CREATED',
    trigger: async (b) => {
      const job = (await b.ok('/jobs', { method: 'POST', body: spec(b) })).job_id;
      const seen = await b.http(`/jobs/${job}/pause`, { method: 'POST' });
      await stays(b, job, 'CREATED');
      return { ...seen, vars: { job } };
    },
  },

  // Enumerators, through `POST /jobs`.
  {
    surface: 'enumerator', group: 'http',
    input: 'CSV with a ragged row: three fields under a two-column header (`POST /jobs`)',
    error: 'csv <dir>/ragged.csv: line 3: inconsistent columns: expected 2 columns, got 3; set relax_column_count: true to accept ragged rows, or on_error: "skip"',
    signal: 'HTTP 422 enumeration_failed', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { enumerator_config: { file_path: b.write('ragged.csv', 'id,text\n1,a\n2,b,c\n') } })),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'CSV in Latin-1 read as UTF-8: `café` as byte 0xE9 on line 2 (`POST /jobs`)',
    error: 'csv <dir>/latin1.csv: line 2: invalid UTF-8 (byte 0xe9); re-save the file as UTF-8 or set enumerator_config.encoding to the file\'s encoding (utf-16le, latin1)',
    signal: 'HTTP 422 enumeration_failed', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { enumerator_config: { file_path: b.write('latin1.csv', Buffer.from('id,text\n1,caf\xe9\n', 'latin1')) } })),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'a CSV `file_path` that does not exist (`POST /jobs`)',
    error: 'enumerator_config.file_path: no such file or directory: <dir>/missing.csv',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { enumerator_config: { file_path: `${b.dir}/missing.csv` } })),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'a file `base_directory` that does not exist (`POST /jobs`)',
    error: 'enumerator_config.base_directory: no such file or directory: <dir>/no-folder',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { enumerator_type: 'file', enumerator_config: { base_directory: `${b.dir}/no-folder` } })),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'a file glob that matches nothing (`"pattern": "*.md"`, `POST /jobs`)',
    error: 'enumerator_config.pattern: *.md matched no files under <dir>/docs; no job was created',
    signal: 'HTTP 422 enumeration_failed', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { enumerator_type: 'file', enumerator_config: { base_directory: numbered(b, 'docs', 1, 2), pattern: '*.md' } })),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'a symbolic link inside `base_directory` that leads outside it, with `follow_symlinks` (`POST /jobs`)',
    error: 'enumerator_config.follow_symlinks: escape.txt is a symbolic link that leads outside base_directory (to <dir>/ok.csv); it is never followed. Leave it out with exclude_patterns',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => {
      const folder = numbered(b, 'linked', 1, 1);
      symlinkSync(okCsv(b), `${folder}/escape.txt`);
      return createHttp(b, spec(b, { enumerator_type: 'file', enumerator_config: { base_directory: folder, follow_symlinks: true } }));
    },
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'a JSON file whose top level is an object, not an array (`POST /jobs`)',
    error: 'enumerator_config.items_path: the top level of <dir>/object.json is an object, not an array of items (keys: data)',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { enumerator_type: 'json', enumerator_config: { file_path: b.write('object.json', '{"data": {"items": [1, 2]}}') } })),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'a JSON `items_path` that is not there (`"items_path": "data.rows"`)',
    error: 'enumerator_config.items_path: "data.rows" not found: data has no "rows" (keys: items)',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { enumerator_type: 'json', enumerator_config: { file_path: b.write('object.json', '{"data": {"items": [1, 2]}}'), items_path: 'data.rows' } })),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'a JSON file that is not valid JSON (`POST /jobs`)',
    error: "json <dir>/invalid.json: line 2 column 7 (position 13): not valid JSON: Unexpected token '}'",
    signal: 'HTTP 422 enumeration_failed', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { enumerator_type: 'json', enumerator_config: { file_path: b.write('invalid.json', '[1, 2,\n{"a": }]') } })),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'a JSON Lines file with a broken line 3 (`POST /jobs`)',
    error: "json <dir>/broken.jsonl: line 3 column 8: not valid JSON: Expected ',' or '}' after property value",
    signal: 'HTTP 422 enumeration_failed', kept: 'no job is created; lines 1 and 2 are not kept either',
    trigger: (b) => createHttp(b, spec(b, { enumerator_type: 'json', enumerator_config: { file_path: b.write('broken.jsonl', '{"a": 1}\n{"a": 2}\n{"a": 3\n') } })),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'SQL that writes: `INSERT INTO t …` (SQLite)',
    error: 'enumerator_config.query: SQLite refused the statement: it writes to the database, which is opened read-only; only a single SELECT is allowed',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created; the database is unchanged',
    trigger: (b) => sqliteUnchanged(b, "INSERT INTO t VALUES (3, 'c')"),
  },
  {
    surface: 'enumerator', group: 'http',
    input: "SQL `ATTACH DATABASE 'other.db' AS x` (SQLite)",
    error: 'enumerator_config.query: SQLite refused the statement: it returns no rows (ATTACH, DETACH, PRAGMA assignments and other commands are not allowed); only a single SELECT is allowed',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created; no database file is made for it',
    trigger: async (b) => {
      const seen = await sqliteUnchanged(b, `ATTACH DATABASE '${b.dir}/other.db' AS x`);
      if (existsSync(`${b.dir}/other.db`)) throw new Error('ATTACH made a database file');
      return seen;
    },
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'SQL `PRAGMA user_version = 5` (a writing pragma, SQLite)',
    error: 'enumerator_config.query: SQLite refused the statement: it writes to the database, which is opened read-only; only a single SELECT is allowed',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created; the database is unchanged',
    trigger: (b) => sqliteUnchanged(b, 'PRAGMA user_version = 5'),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'two SQL statements: `SELECT 1; DELETE FROM t`',
    error: 'enumerator_config.query: only one statement is allowed, and the query has more than one',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created; nothing is deleted',
    trigger: (b) => sqliteUnchanged(b, 'SELECT 1; DELETE FROM t'),
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'SQL `CREATE TABLE` against PostgreSQL',
    error: 'enumerator_config.query: PostgreSQL refused the statement: cannot execute CREATE TABLE in a read-only transaction; only a single SELECT is allowed',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created; no table is made',
    trigger: async (b) => {
      const url = process.env.ABP_TEST_PG_URL as string;
      const seen = await createHttp(b, sqlSpec(b, 'CREATE TABLE abp_catalogue (a int)', url));
      const [row] = await queryPostgres<{ t: string | null }>(url, "select to_regclass('abp_catalogue')::text t", []);
      if (row?.t !== null) throw new Error('the table was made');
      return seen;
    },
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'SQL on a database file that does not exist',
    error: 'enumerator_config.connection_string: no such file or directory: <dir>/missing.db',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created; no empty database file is made',
    trigger: async (b) => {
      const seen = await createHttp(b, sqlSpec(b, 'SELECT 1', `${b.dir}/missing.db`));
      if (existsSync(`${b.dir}/missing.db`)) throw new Error('a database file was made');
      return seen;
    },
  },
  {
    surface: 'enumerator', group: 'http',
    input: 'SQL that returns no rows',
    error: 'sql query "SELECT * FROM t WHERE id > 10": the enumeration produced no items; no job was created',
    signal: 'HTTP 422 enumeration_failed', kept: 'no job is created (an empty job is never made)',
    trigger: (b) => createHttp(b, sqlSpec(b, 'SELECT * FROM t WHERE id > 10')),
  },

  // Workers and sync, through `POST /jobs`.
  {
    surface: 'worker', group: 'http',
    input: 'a `prompt_template` naming a field no item has (`{{item.txt}}`, `POST /jobs`)',
    error: 'prompt_template: {{item.txt}} names a field that no item has (item 1 has id, text, _row_index, _id); no job was created',
    signal: 'HTTP 400 invalid_input', kept: 'no job is created',
    trigger: (b) => createHttp(b, spec(b, { prompt_template: 'Summarise {{item.txt}}' })),
  },
  {
    surface: 'sync', group: 'http',
    input: 'a sync option that does not exist (`"max_delet_ratio": 0.2`, `POST /jobs?mode=plan`)',
    error: 'unknown field in sync.options: max_delet_ratio',
    signal: 'HTTP 400 invalid_input', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.http('/jobs?mode=plan', { method: 'POST', body: syncSpec(`dir:${numbered(b, 'docs', 1, 2)}`, `dir:${b.dir}/out`, { options: { max_delet_ratio: 0.2 } }) })),
  },
  {
    surface: 'sync', group: 'http',
    input: 'a source folder that does not exist (`POST /jobs` with a `sync` section)',
    error: 'sync pair docs: the source (dir <dir>/gone) is down: <dir>/gone does not exist; nothing was planned or written',
    signal: 'HTTP 409 conflict', kept: 'no job; nothing is written to the target; the pair is skipped (a `sync_skipped` event)',
    trigger: async (b) => {
      const skipped = async () => (await b.sb.query("select count(*) n from events where type = 'sync_skipped'"))[0]?.n;
      const before = Number(await skipped());
      const seen = await createHttp(b, syncSpec(`dir:${b.dir}/gone`, `dir:${b.dir}/out`));
      if (existsSync(`${b.dir}/out`)) throw new Error('the target was written');
      if (Number(await skipped()) !== before + 1) throw new Error('no sync_skipped event');
      return seen;
    },
  },
  {
    surface: 'sync', group: 'http',
    input: 'a JSONL source whose line 2 has no `id` (the key field)',
    error: 'sync pair docs: <dir>/nokey.jsonl:2: the item has no id (the key field); no writes, and the baseline is unchanged',
    signal: 'HTTP 422 enumeration_failed', kept: 'no job; nothing is written to the target',
    trigger: async (b) => {
      const seen = await createHttp(b, syncSpec(`jsonl:${b.write('nokey.jsonl', '{"id": 1, "t": "a"}\n{"t": "b"}\n')}`, `jsonl:${b.dir}/out.jsonl`));
      if (existsSync(`${b.dir}/out.jsonl`)) throw new Error('the target was written');
      return seen;
    },
  },
  {
    surface: 'sync', group: 'http',
    input: 'a CSV source without the key column (`id_column` defaults to `id`; the file has `key`)',
    error: 'sync pair docs: <dir>/keyed.csv: id_column "id" is not a column (columns: key, t); name the key column with id_column; no writes, and the baseline is unchanged',
    signal: 'HTTP 422 enumeration_failed', kept: 'no job; nothing is written to the target',
    trigger: async (b) => {
      const seen = await createHttp(b, syncSpec(`csv:${b.write('keyed.csv', 'key,t\n1,a\n2,b\n')}`, `jsonl:${b.dir}/out.jsonl`));
      if (existsSync(`${b.dir}/out.jsonl`)) throw new Error('the target was written');
      return seen;
    },
  },

  // Last of the HTTP rows: it uses up the rate limit.
  {
    surface: 'HTTP', group: 'http',
    input: 'more than `ABP_RATE_LIMIT` requests a minute (100 here) with one key',
    error: 'too many requests; retry in 1 s (the limit is ABP_RATE_LIMIT per minute)',
    signal: 'HTTP 429 rate_limited, Retry-After: 1', kept: 'nothing changes; `/health` still answers',
    trigger: (b) =>
      b.nothingChanges(async () => {
        for (let i = 0; i < 200; i++) {
          const seen = await b.http('/jobs/99');
          if (seen.signal.startsWith('HTTP 429')) {
            if ((await b.ok('/health', { key: false })).status !== 'ok') throw new Error('/health is limited too');
            return seen;
          }
        }
        throw new Error('no 429 after 200 requests');
      }),
  },

  // MCP: `abp mcp` over stdio, with the SDK's client.
  {
    surface: 'MCP', group: 'mcp',
    input: 'a tool that does not exist (`no_such_tool`)',
    error: 'MCP error -32602: Tool no_such_tool not found',
    signal: 'isError', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.tool('no_such_tool', {})),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`create_job` with a misspelt argument (`max_workrs`)',
    error: 'create_job: unknown argument "max_workrs" (did you mean max_workers?); it takes name, user_intent, enumerator_type, enumerator_config, worker_type, worker_config, max_workers, max_retries, timeout_seconds, output_schema, max_cost_usd, max_cost_per_unit_usd, cache, post_processing_prompt, allow_partial, auto_resume, prompt_template, sync',
    signal: 'isError', kept: 'no job is created (before, the argument was dropped and the job made with the default)',
    trigger: (b) => b.nothingCreated(() => b.tool('create_job', { ...spec(b), max_workrs: 2 })),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`create_job` with an unknown top-level argument (`enumerator` for `enumerator_type`)',
    error: 'create_job: unknown argument "enumerator" (did you mean enumerator_type?); it takes name, user_intent, enumerator_type, enumerator_config, worker_type, worker_config, max_workers, max_retries, timeout_seconds, output_schema, max_cost_usd, max_cost_per_unit_usd, cache, post_processing_prompt, allow_partial, auto_resume, prompt_template, sync',
    signal: 'isError', kept: 'no job is created',
    trigger: (b) => {
      const { enumerator_type, ...rest } = spec(b);
      return b.nothingCreated(() => b.tool('create_job', { ...rest, enumerator: enumerator_type }));
    },
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`create_job` with a misspelt worker config field (`comand` for the shell worker’s `command`)',
    error: "worker_config.command: Invalid input: expected string, received undefined; unknown field in worker_config: comand. Fix that field and call the tool again; list_workers shows every worker type and its config fields.",
    signal: 'isError', kept: 'no job is created',
    trigger: (b) => b.nothingCreated(() => b.tool('create_job', spec(b, { worker_config: { comand: 'true' } }))),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`create_job` in batch mode with a deadline past the providers\' 24-hour window (`batch_deadline_hours: 48`)',
    error: 'worker_config.batch_deadline_hours: Too big: expected number to be <=24. Fix that field and call the tool again; list_workers shows every worker type and its config fields.',
    signal: 'isError', kept: 'no job is created',
    trigger: (b) =>
      b.nothingCreated(() => b.tool('create_job', spec(b, { worker_type: 'http-llm', worker_config: { api: 'anthropic', model: 'claude-haiku-4-5', batch: true, batch_deadline_hours: 48 } }))),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`start_job` on a host that cancels every approval dialog (as `claude -p` does): the person gave no answer',
    error: 'Show the test unit\'s output to the user and ask them. Only on their word: start_job {"job_id":<job>,"approve":true} runs every unit; start_job {"job_id":<job>,"reject":true} goes back to edit the prompt. Do not approve on your own.',
    signal: '`decision: "no_answer"`, `next` (not an error)',
    kept: 'the job stays TESTING; the person is not asked again, and a later `approve: true` is recorded as approved by "assistant (on the user\'s word)"',
    trigger: async (b) => {
      const job = (await b.toolOk('create_job', spec(b))).job_id;
      const tested = await b.toolOk('start_job', { job_id: job, wait_seconds: 30 });
      if (tested.decision !== 'no_answer' || tested.job.status !== 'TESTING') throw new Error(`unexpected: ${JSON.stringify(tested)}`);
      const approved = await b.toolOk('start_job', { job_id: job, approve: true });
      if (approved.job.approved_by !== "assistant (on the user's word)") throw new Error(`not recorded: ${JSON.stringify(approved.job)}`);
      // Let the job finish, so that the rows after this one see a quiet store.
      for (let s = approved.job; !['COMPLETED', 'FAILED'].includes(s.status); s = await b.toolOk('get_job_status', { job_id: job })) {
        await new Promise((r) => setTimeout(r, 100));
      }
      return { error: tested.next, signal: '`decision: "no_answer"`, `next` (not an error)', vars: { job } };
    },
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`get_job` with `job_id: "abc"`',
    error: 'MCP error -32602: Input validation error: Invalid arguments for tool get_job: Invalid input: expected number, received NaN at job_id',
    signal: 'isError', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.tool('get_job', { job_id: 'abc' })),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`get_job_status` for a job that does not exist',
    error: 'job 99 does not exist. Use list_jobs to see the jobs that exist.',
    signal: 'isError', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.tool('get_job_status', { job_id: 99 })),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`create_job` with `enumerator_config` as a string that is not JSON',
    error: 'enumerator_config: expected a JSON object, got "{file_path: x}". Fix that field and call the tool again; list_enumerators shows every enumerator type and its config fields.',
    signal: 'isError', kept: 'no job is created',
    trigger: (b) => b.nothingCreated(() => b.tool('create_job', { ...spec(b), enumerator_config: '{file_path: x}' })),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`create_job` with an unknown enumerator config field (`delimeter`)',
    error: 'unknown field in enumerator_config: delimeter. Fix that field and call the tool again; list_enumerators shows every enumerator type and its config fields.',
    signal: 'isError', kept: 'no job is created',
    trigger: (b) => b.nothingCreated(() => b.tool('create_job', spec(b, { enumerator_config: { file_path: okCsv(b), delimeter: ';' } }))),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`start_job` with `wait_seconds: 500` (over the 50 s cap)',
    error: 'MCP error -32602: Input validation error: Invalid arguments for tool start_job: Too big: expected number to be <=50 at wait_seconds',
    signal: 'isError', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.tool('start_job', { job_id: 1, wait_seconds: 500 })),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`start_job` with `approve: true` on a CREATED job',
    error: 'job <job> is CREATED; cannot approve (allowed from TESTING). Start it with start_job {"job_id":<job>}: it runs one test unit.',
    signal: 'isError', kept: 'the job stays CREATED',
    trigger: async (b) => {
      const job = (await b.toolOk('create_job', spec(b))).job_id;
      const seen = await b.tool('start_job', { job_id: job, approve: true });
      await stays(b, job, 'CREATED');
      return { ...seen, vars: { job } };
    },
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`update_job` with a prompt template naming an unknown placeholder',
    error: 'prompt_template: unknown placeholder {{itme.text}}; use {{intent}}, {{job.name}}, {{item.FIELD}}, {{item_data}} or {{output_instructions}}. Fix that field and call the tool again; the tool\'s input schema lists its arguments.',
    signal: 'isError', kept: 'the job keeps its prompt',
    trigger: async (b) => {
      const job = await b.toolOk('create_job', spec(b));
      const seen = await b.tool('update_job', { job_id: job.job_id, prompt_template: 'Do {{itme.text}}' });
      const [row] = await b.sb.query<{ prompt_template: string }>('select prompt_template from jobs where id = ?', job.job_id);
      if (row?.prompt_template !== job.prompt_template) throw new Error('the prompt changed');
      return seen;
    },
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`approve_code` with a hash that is not 64 hex digits',
    error: 'code_sha256: expected 64 hex digits, got "xyz". Fix that field and call the tool again; the tool\'s input schema lists its arguments.',
    signal: 'isError', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.tool('approve_code', { job_id: 1, code_sha256: 'xyz' })),
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`cancel_job` on a job that has ended',
    error: 'job <job> is CANCELLED; cannot cancel (allowed from CREATED, TESTING, RUNNING, PAUSED). The job has ended; create a new one with create_job.',
    signal: 'isError', kept: 'the job stays CANCELLED',
    trigger: async (b) => {
      const job = (await b.toolOk('create_job', spec(b))).job_id;
      await b.toolOk('cancel_job', { job_id: job });
      const seen = await b.tool('cancel_job', { job_id: job });
      await stays(b, job, 'CANCELLED');
      return { ...seen, vars: { job } };
    },
  },
  {
    surface: 'MCP', group: 'mcp',
    input: '`get_results` with `format: "xml"`',
    error: 'MCP error -32602: Input validation error: Invalid arguments for tool get_results: Invalid option: expected one of "jsonl"|"json"|"csv"|"markdown" at format',
    signal: 'isError', kept: 'nothing changes',
    trigger: (b) => b.nothingChanges(() => b.tool('get_results', { job_id: 1, format: 'xml' })),
  },

  // Workers: units that fail while the job runs, on one executor. Each job has items a, b and c; only b fails.
  {
    surface: 'worker', group: 'worker',
    input: 'a shell command that exits 3',
    error: 'exit code 3: bad item b',
    signal: 'unit FAILED (retryable)', kept: 'items a and c SUCCEEDED; the job ends FAILED',
    trigger: (b) => onlyB(b, shellFailingB(b, 'echo "bad item $1" >&2; exit 3')),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'a hung shell command (`sleep 30`) with `timeout_seconds: 1`',
    error: 'timed out; killed process group <pgid>',
    signal: 'unit FAILED (timeout)', kept: 'every process in the group is gone; items a and c SUCCEEDED',
    trigger: async (b) => {
      const pidFile = `${b.dir}/hung.pid`;
      const seen = await onlyB(b, shellFailingB(b, `echo $$ > ${pidFile}; sleep 30`, { timeout_seconds: 1 }));
      const pgid = Number(readFileSync(pidFile, 'utf8'));
      const left = runningInGroup(pgid);
      if (left.length > 0) throw new Error(`process group ${pgid} still runs ${left.join(', ')}`);
      return { ...seen, vars: { pgid } };
    },
  },
  {
    surface: 'worker', group: 'worker',
    input: 'a shell command that crashes (kills itself with SIGSEGV)',
    error: 'killed by SIGSEGV',
    signal: 'unit FAILED (retryable)', kept: 'items a and c SUCCEEDED',
    trigger: (b) => onlyB(b, shellFailingB(b, 'kill -SEGV $$')),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'a shell command whose stdout outgrows `max_output_bytes` (5000 bytes against 1000), with `max_retries: 2`',
    error: 'stdout exceeded max_output_bytes (1000)',
    signal: 'unit FAILED (permanent)', kept: 'one attempt, no retries spent on it; items a and c SUCCEEDED',
    trigger: (b) => {
      const spec = shellFailingB(b, 'head -c 5000 /dev/zero', { max_retries: 2 });
      return onlyB(b, { ...spec, worker_config: { ...spec.worker_config, max_output_bytes: 1000 } });
    },
  },
  {
    surface: 'worker', group: 'worker',
    input: 'a shell argument filled from an item past the system’s limit per argument (`{{item.text}}`, 200,000 bytes for item b), with `max_retries: 2`',
    error: 'worker_config.args[1] is 200,000 bytes once filled in, over the system\'s 131,072 per argument: pass long values on stdin',
    signal: 'unit FAILED (permanent)', kept: 'one attempt, no retries spent on it; items a and c SUCCEEDED (before: `Cannot read properties of undefined (reading \'replace\')`, retried)',
    trigger: (b) =>
      onlyB(b, {
        enumerator_type: 'csv',
        enumerator_config: { file_path: b.write('long.csv', `id,text\na,alpha\nb,${'x'.repeat(200_000)}\nc,gamma\n`), id_column: 'id' },
        worker_type: 'shell',
        worker_config: { command: 'echo', args: ['-n', '{{item.text}}'] },
        max_retries: 2,
      }),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an agent CLI (`agent-cli`, text output) that writes 1 GB without a newline for item b, with `max_retries: 2`',
    error: 'stdout exceeded max_output_bytes (67108864)',
    signal: 'unit FAILED (permanent)', kept: 'its process group is killed at 64 MiB, one attempt; items a and c SUCCEEDED (before: the executor crashed with `Invalid string length`)',
    trigger: (b) =>
      onlyB(b, {
        ...items(b),
        worker_type: 'agent-cli',
        worker_config: { command: 'sh', args: ['-c', 'if [ "$1" = b ]; then head -c 1000000000 /dev/zero; else echo "$1"; fi', 'sh', '{{item.id}}'], output: 'text', stdin: null },
        max_retries: 2,
      }),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'a function worker whose export throws',
    error: 'cannot handle item b',
    signal: 'unit FAILED (retryable)', kept: 'the stack is kept as the unit’s stderr tail; items a and c SUCCEEDED',
    trigger: async (b) => {
      const seen = await onlyB(b, { ...items(b), worker_type: 'function', worker_config: { module: FAILS_ON_B } });
      const detail = await unitDetail(b, seen.unit);
      if (!String(detail.stderr_tail).includes('fails-on-b.mjs')) throw new Error(`no stack in the stderr tail: ${detail.stderr_tail}`);
      return seen;
    },
  },
  {
    surface: 'worker', group: 'worker',
    input: 'a function worker `export_name` the module does not export, with `max_retries: 2`',
    error: 'worker_config.export_name: <root>/test/catalogue/fails-on-b.mjs has no function export "nope"',
    signal: 'unit FAILED (permanent)', kept: 'one attempt per unit, no retries spent (before: piscina’s "No handler function exported", retried)',
    trigger: async (b) => {
      const { job, units } = await b.run({ ...items(b), worker_type: 'function', worker_config: { module: FAILS_ON_B, export_name: 'nope' }, max_retries: 2 });
      if (job.status !== 'FAILED' || units.some((u) => u.status !== 'FAILED' || u.failures !== 1)) throw new Error(`expected three units FAILED after one attempt: ${JSON.stringify(units)}`);
      return { error: units[0].error, signal: `unit FAILED (${units[0].error_kind})`, vars: { root: ROOT } };
    },
  },
  {
    surface: 'worker', group: 'worker',
    input: 'a function worker `module` that does not exist (`POST /jobs/{id}/start`)',
    error: 'job <job> not started: the function worker is unavailable (down): worker_config.module: <dir>/gone.mjs is not a readable file',
    signal: 'HTTP 409 conflict', kept: 'the job stays CREATED; no unit runs',
    trigger: async (b) => {
      const job = (await b.ok('/jobs', { method: 'POST', body: spec(b, { worker_type: 'function', worker_config: { module: `${b.dir}/gone.mjs` } }) })).job_id;
      const seen = await b.http(`/jobs/${job}/start`, { method: 'POST', body: { skip_test: true } });
      await stays(b, job, 'CREATED');
      return { ...seen, vars: { job } };
    },
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an answer that does not match the job’s `output_schema` (`{"n": "two"}` where `n` is a number)',
    error: 'output_schema: the answer does not match: /n: must be number {"type":"number"}',
    signal: 'unit FAILED (invalid_output)', kept: 'the rejected answer is kept as the unit’s output; items a and c SUCCEEDED',
    trigger: async (b) => {
      const seen = await onlyB(b, {
        ...items(b),
        worker_type: 'shell',
        worker_config: { command: 'sh', args: ['-c', `if [ "$1" = b ]; then echo '{"n": "two"}'; else echo '{"n": 2}'; fi`, 'sh', '{{item.id}}'] },
        output_schema: { type: 'object', required: ['n'], properties: { n: { type: 'number' } } },
      });
      if ((await unitDetail(b, seen.unit)).output !== '{"n": "two"}') throw new Error('the rejected answer was not kept');
      return seen;
    },
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an `output_schema` pattern that backtracks catastrophically (`^(a+)+$`) and an answer of 40 `a`s and a `!` for item b',
    error: 'output_schema: the answer does not match: /s: must match pattern "^(a+)+$" {"pattern":"^(a+)+$"}',
    signal: 'unit FAILED (invalid_output)', kept: 'the executor is not held up (patterns run on RE2, in linear time); items a and c SUCCEEDED (before: the executor froze for hours)',
    trigger: (b) =>
      onlyB(b, {
        ...items(b),
        worker_type: 'shell',
        worker_config: { command: 'sh', args: ['-c', `if [ "$1" = b ]; then echo '{"s": "${'a'.repeat(40)}!"}'; else echo '{"s": "aaa"}'; fi`, 'sh', '{{item.id}}'] },
        output_schema: { type: 'object', required: ['s'], properties: { s: { type: 'string', pattern: '^(a+)+$' } } },
      }),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an LLM answer with no JSON in it, for a job with an `output_schema`',
    error: 'output_schema: the answer contains no JSON value',
    signal: 'unit FAILED (invalid_output)', kept: 'the answer is kept as the unit’s output; items a and c SUCCEEDED',
    trigger: async (b) => {
      const seen = await onlyB(b, llmSpec(b, 'plain-text', { output_schema: { type: 'object' } }));
      if ((await unitDetail(b, seen.unit)).output !== 'no JSON here') throw new Error('the answer was not kept');
      return seen;
    },
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an LLM API that answers 400, with `max_retries: 2`',
    error: 'HTTP 400 from <url>/chat/completions: invalid_request_error: max_tokens is too large for this model',
    signal: 'unit FAILED (permanent)', kept: 'one attempt, no retries spent on it; items a and c SUCCEEDED',
    trigger: (b) => onlyB(b, llmSpec(b, 'bad-request', { max_retries: 2 })),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an LLM API that answers 503 every time, with `max_retries: 1`',
    error: 'HTTP 503 from <url>/chat/completions: server_error: the model is overloaded (after 2 attempts)',
    signal: 'unit FAILED (retryable)', kept: 'retried with backoff first; items a and c SUCCEEDED',
    trigger: (b) => onlyB(b, llmSpec(b, 'overloaded', { max_retries: 1 }), 2),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an LLM API that answers 429 once (`retry-after-ms: 100`)',
    error: 'HTTP 429 from <url>/chat/completions: rate_limit_error: slow down',
    signal: 'a `cool_down` event on `GET /jobs/{id}/events`', kept: 'no attempt is spent; the unit runs again after the cool-down and the job COMPLETES',
    trigger: async (b) => {
      const { job, units } = await b.run(llmSpec(b, 'rate-limited'));
      if (job.status !== 'COMPLETED' || units.some((u) => u.failures !== 0)) throw new Error(`expected COMPLETED with no failure: ${JSON.stringify({ job, units })}`);
      const stream = await new SseClient(b.serve?.url as string, `/jobs/${job.job_id}/events?since=0`).open();
      await stream.until((s) => s.ended);
      const cool = stream.events.find((e) => e.data?.kind === 'cool_down');
      if (!cool) throw new Error(`no cool_down event: ${JSON.stringify(stream.events)}`);
      return { error: cool.data.data.error, signal: `a \`${cool.data.kind}\` event on \`GET /jobs/{id}/events\``, vars: { url: b.llmUrl } };
    },
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an LLM API that answers 200 with HTML instead of JSON',
    error: 'malformed JSON from <url>/chat/completions (HTTP 200): Unexpected token \'<\', "<html>502 "... is not valid JSON; body starts "<html>502 Bad Gateway</html>"',
    signal: 'unit FAILED (retryable)', kept: 'items a and c SUCCEEDED',
    trigger: (b) => onlyB(b, llmSpec(b, 'not-json')),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an LLM API that answers 200 with JSON but no `choices`',
    error: 'unexpected response from <url>/chat/completions: the response has no choices[0]',
    signal: 'unit FAILED (retryable)', kept: 'items a and c SUCCEEDED',
    trigger: (b) => onlyB(b, llmSpec(b, 'no-choices')),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an LLM API that refuses the key (401)',
    error: 'auth_failed: HTTP 401 from <url>/chat/completions: invalid_api_key: Incorrect API key provided. Check the key in CATALOGUE_LLM_KEY',
    signal: 'job PAUSED', kept: 'the job pauses instead of failing every unit: items a and c SUCCEEDED, b waits PENDING with no attempt spent',
    trigger: (b) => pausedByB(b, llmSpec(b, 'bad-key')),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an LLM API that says the quota is used up (429 `insufficient_quota`)',
    error: 'quota_exhausted: HTTP 429 from <url>/chat/completions: insufficient_quota: You exceeded your current quota',
    signal: 'job PAUSED', kept: 'items a and c SUCCEEDED, b waits PENDING with no attempt spent',
    trigger: (b) => pausedByB(b, llmSpec(b, 'no-quota')),
  },
  {
    surface: 'worker', group: 'worker',
    input: 'an `http-llm` job whose `api_key_env` names a variable that is not set (`POST /jobs/{id}/start`)',
    error: 'job <job> not started: the http-llm worker is not authenticated (auth_failed): CATALOGUE_UNSET_KEY is not set: export CATALOGUE_UNSET_KEY=<your key> in the environment abp runs in (or name another variable in worker_config.api_key_env)',
    signal: 'HTTP 409 conflict', kept: 'the job stays CREATED; no unit runs',
    trigger: async (b) => {
      const body = spec(b, { worker_type: 'http-llm', worker_config: { api: 'openai', base_url: b.llmUrl, model: 'gpt-4o-mini', api_key_env: 'CATALOGUE_UNSET_KEY' } });
      const job = (await b.ok('/jobs', { method: 'POST', body })).job_id;
      const seen = await b.http(`/jobs/${job}/start`, { method: 'POST', body: { skip_test: true } });
      await stays(b, job, 'CREATED');
      return { ...seen, vars: { job } };
    },
  },
  {
    surface: 'worker', group: 'worker',
    input: 'a shell `command` that is not on PATH (`POST /jobs/{id}/start`)',
    error: 'job <job> not started: the shell worker is unavailable (down): no-such-command-xyz is not an executable file on PATH',
    signal: 'HTTP 409 conflict', kept: 'the job stays CREATED; no unit runs or spends a retry',
    trigger: async (b) => {
      const job = (await b.ok('/jobs', { method: 'POST', body: spec(b, { worker_config: { command: 'no-such-command-xyz' } }) })).job_id;
      const seen = await b.http(`/jobs/${job}/start`, { method: 'POST', body: { skip_test: true } });
      await stays(b, job, 'CREATED');
      return { ...seen, vars: { job } };
    },
  },
];
