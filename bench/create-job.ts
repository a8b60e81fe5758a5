/**
 * One measured run, in its own process so that peak RSS belongs to it alone:
 *   node dist/bench/create-job.js abp|raw CSV_FILE DB_FILE
 * Prints {ms, peak_rss_mb, rows} as JSON. `ms` leaves module loading out (the
 * startup suite times whole processes, this raw mode among them).
 */
import { createReadStream, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { parse } from 'csv-parse';

function peakRssMb(): number {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

async function raw(csv: string, db: string): Promise<number> {
  const sqlite = new Database(db);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.exec('create table units (id integer primary key autoincrement, job_id integer, seq integer, item_id text, payload text, status text)');
  const insert = sqlite.prepare('insert into units (job_id, seq, item_id, payload, status) values (1, ?, ?, ?, ?)');
  sqlite.exec('begin');
  let seq = 0;
  for await (const row of createReadStream(csv).pipe(parse({ columns: true, bom: true }))) {
    seq++;
    insert.run(seq, String(seq), JSON.stringify({ ...row, _row_index: seq, _id: seq }), 'PENDING');
  }
  sqlite.exec('commit');
  sqlite.close();
  return seq;
}

/** abp's modules, loaded before the clock starts: createApp would otherwise load them on its first call. */
async function loadAbp() {
  const [{ createApp }, { resolveConfig }] = await Promise.all([
    import('../src/app.js'),
    import('../src/config.js'),
    import('../src/store/database.js'),
    import('../enumerators/index.js'),
    import('../workers/index.js'),
    import('../src/orchestrator/orchestrator.js'),
    import('../src/executor/prompt-synthesizer.js'),
    import('../src/executor/job-executor.js'),
    import('../src/executor/launcher.js'),
    import('../src/sync/apply-worker.js'),
    import('../src/store/task-store.js'),
  ]);
  return async (csv: string, db: string): Promise<number> => {
    const app = await createApp(resolveConfig({ ABP_HOME: dirname(db), ABP_DB: db }));
    const job = await app.orchestrator.createJob({
      name: 'bench',
      user_intent: 'bench',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv },
      worker_type: 'shell',
      worker_config: { command: 'true' },
    });
    await app.close();
    return job.total;
  };
}

const [mode, csv, db] = process.argv.slice(2);
if (!csv || !db || (mode !== 'abp' && mode !== 'raw')) {
  process.stderr.write('usage: create-job.js abp|raw CSV_FILE DB_FILE\n');
  process.exit(2);
}
const abp = mode === 'abp' ? await loadAbp() : undefined;
const started = performance.now();
const rows = abp ? await abp(csv, db) : await raw(csv, db);
const ms = performance.now() - started;
process.stdout.write(`${JSON.stringify({ ms, peak_rss_mb: peakRssMb(), rows })}\n`);
