/**
 * One job of 10,000,000 CSV rows, on SQLite and on PostgreSQL: creating it
 * (`abp create`, whole process: wall time and peak RSS), its size on disk, its
 * status (in process and over MCP stdio against a real `abp mcp`), a page of
 * `list_units` filtered by state from the middle of the job (keyset cursor
 * against OFFSET), and a full JSONL export (`abp results JOB --format jsonl >
 * file`, whole process). Before the reads, the middle tenth of the job is
 * marked SUCCEEDED/FAILED by a direct SQL update (the job's counters moved to
 * match), so a state filter has units in mixed states around it.
 *
 * ABP_BENCH_SCALE_UNITS (default 10,000,000), ABP_BENCH_SCALE_RUNS (runs of each
 * whole-process figure, default 2; ABP_BENCH_SCALE_PG_RUNS on PostgreSQL, default 1),
 * ABP_BENCH_SCALE_PG=0 or ABP_BENCH_SCALE_SQLITE=0 leaves that store out.
 * Needs room in the temp dir: the CSV (~0.2 GB), each database (~2–3 GB) and one
 * export (~2 GB) at a time; everything is deleted at the end.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, openSync, closeSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import Database from 'better-sqlite3';
import pg from 'pg';
import { createApp } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { CLI_ENTRY } from '../src/executor/launcher.js';
import { createTestDatabase, dropTestDatabase, startPostgres, type PostgresServer } from '../test/helpers/postgres.js';
import { median, spread, type BenchRow } from './table.js';
import { readReport, writeReporter } from './process-report.js';

const UNITS = Number(process.env.ABP_BENCH_SCALE_UNITS ?? 10_000_000);
const RUNS = Number(process.env.ABP_BENCH_SCALE_RUNS ?? 2);
/** Whole-process runs on PostgreSQL: one 10M creation there takes as long as the SQLite part's two together. */
const PG_RUNS = Number(process.env.ABP_BENCH_SCALE_PG_RUNS ?? 1);
const WITH_PG = process.env.ABP_BENCH_SCALE_PG !== '0';
/** ABP_BENCH_SCALE_SQLITE=0 leaves SQLite out (to run the two stores as two processes). */
const WITH_SQLITE = process.env.ABP_BENCH_SCALE_SQLITE !== '0';
const PAGE = 50;
const RSS_TARGET_MB = 150;
const n = UNITS.toLocaleString('en');


interface Whole {
  ms: number;
  mb: number;
  /** The process's own CPU time, user + system: the machine is shared, so wall time carries the wait for a core. */
  cpu_ms: number;
}

function log(text: string): void {
  process.stderr.write(`bench/scale: ${text}\n`);
}

/** A whole process: wall time spawn → exit and its own peak RSS (VmHWM at exit), stdout to `out` when given. */
async function whole(scratch: string, file: string, args: string[], env: Record<string, string>, out?: string): Promise<Whole> {
  const rssFile = join(scratch, 'rss');
  rmSync(rssFile, { force: true });
  const fd = out ? openSync(out, 'w') : 'ignore';
  const started = performance.now();
  const isNode = file === process.execPath;
  const child = spawn(file, isNode ? ['-r', join(scratch, 'report-rss.cjs'), ...args] : args, {
    env: { ...process.env, ...env, ABP_BENCH_RSS_FILE: rssFile },
    stdio: ['ignore', fd, 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  const ms = performance.now() - started;
  if (typeof fd === 'number') closeSync(fd);
  if (code !== 0) throw new Error(`bench/scale: ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`);
  const report = isNode && existsSync(rssFile) ? readReport(rssFile) : { mb: 0, cpu_ms: 0 };
  return { ms, ...report };
}

async function writeCsv(path: string): Promise<void> {
  const out = createWriteStream(path);
  out.write('id,text\n');
  let chunk = '';
  for (let i = 1; i <= UNITS; i++) {
    chunk += `${i},row ${i}\n`;
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
}

/** Median of `runs` medians of `calls` timed calls, in ms; `fn`s of one list are interleaved run by run. */
async function interleaved(runs: number, calls: number, fns: (() => unknown)[]): Promise<number[][]> {
  const out = fns.map(() => [] as number[]);
  for (let r = 0; r < runs; r++) {
    for (const [k, fn] of fns.entries()) {
      const ms: number[] = [];
      for (let i = 0; i < calls; i++) {
        const t = performance.now();
        await fn();
        ms.push(performance.now() - t);
      }
      (out[k] as number[]).push(median(ms));
    }
  }
  return out;
}

/** The raw store under abp: one parameterised read, for anchors and the bench's own setup. */
interface Raw {
  query(sqlite: string, params: unknown[]): Promise<Record<string, unknown>[]>;
  exec(sqlite: string): Promise<void>;
  close(): Promise<void>;
}

function rawSqlite(file: string): Raw {
  const db = new Database(file);
  const stmts = new Map<string, Database.Statement>();
  return {
    async query(text, params) {
      let s = stmts.get(text);
      if (!s) stmts.set(text, (s = db.prepare(text)));
      if (!s.reader) {
        s.run(...params);
        return [];
      }
      return s.all(...params) as Record<string, unknown>[];
    },
    async exec(text) {
      db.exec(text);
    },
    async close() {
      db.close();
    },
  };
}

async function rawPg(url: string): Promise<Raw> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const toPg = (text: string) => {
    let i = 0;
    return text.replace(/\?/g, () => `$${++i}`);
  };
  return {
    async query(text, params) {
      return (await client.query({ text: toPg(text), values: params })).rows;
    },
    async exec(text) {
      await client.query(text);
    },
    async close() {
      await client.end();
    },
  };
}

const createArgs = (csv: string) => [
  CLI_ENTRY, 'create', '--name', 'scale', '--intent', 'scale', '--enumerator', 'csv', '-e', `file_path=${csv}`, '-e', 'id_column=id', '--worker', 'shell', '-w', 'command=true', '-q',
];

interface Store {
  name: 'SQLite' | 'PostgreSQL';
  /** A fresh, empty database's ABP_DB. */
  fresh(): Promise<string>;
  drop(db: string): Promise<void>;
  raw(db: string): Promise<Raw>;
  /** Bytes on disk, after a checkpoint. */
  size(db: string, raw: Raw): Promise<{ bytes: number; how: string }>;
}

/** Marks the middle tenth of the job SUCCEEDED (three in four) and FAILED (one in four), counters kept consistent. */
async function markMiddle(raw: Raw, jobId: number, lo: number, hi: number): Promise<{ succeeded: number; failed: number }> {
  await raw.exec('begin');
  await raw.query(
    `update work_units set status = case when id % 4 = 0 then 'FAILED' else 'SUCCEEDED' end, attempt = 1,
       output = case when id % 4 = 0 then null else 'ok' end, error = case when id % 4 = 0 then 'bench: failed on purpose' else null end,
       started_at = ?, finished_at = ?, duration_ms = 1
     where job_id = ? and id >= ? and id <= ? and status = 'PENDING'`,
    [Date.now(), Date.now(), jobId, lo, hi],
  );
  const [counts] = await raw.query(
    `select sum(case when status = 'SUCCEEDED' then 1 else 0 end) as s, sum(case when status = 'FAILED' then 1 else 0 end) as f from work_units where job_id = ? and id >= ? and id <= ?`,
    [jobId, lo, hi],
  );
  const succeeded = Number(counts?.s ?? 0);
  const failed = Number(counts?.f ?? 0);
  await raw.query('update jobs set pending = pending - ?, succeeded = succeeded + ?, failed = failed + ? where id = ?', [succeeded + failed, succeeded, failed, jobId]);
  await raw.exec('commit');
  return { succeeded, failed };
}

async function measure(store: Store, scratch: string, csv: string, sqliteCreate: Whole[] | null): Promise<{ rows: BenchRow[]; create: Whole[] }> {
  const s = store.name;
  const runs = s === 'SQLite' ? RUNS : PG_RUNS;
  // ---- creation: abp create, whole process, a fresh database each run; on SQLite interleaved with the raw insert
  const create: Whole[] = [];
  const rawCreate: Whole[] = [];
  let keep = '';
  for (let r = 0; r < runs; r++) {
    const db = await store.fresh();
    log(`${s}: abp create, run ${r + 1} of ${runs}`);
    create.push(await whole(scratch, process.execPath, createArgs(csv), { ABP_HOME: scratch, ABP_DB: db }));
    log(`${s}: abp create ${JSON.stringify(create.at(-1))}`);
    if (keep) await store.drop(keep);
    keep = db;
    if (s === 'SQLite') {
      const rawDb = join(scratch, `raw-${r}.db`);
      log(`${s}: raw better-sqlite3 insert, run ${r + 1}`);
      rawCreate.push(await whole(scratch, process.execPath, [join(import.meta.dirname, 'create-job.js'), 'raw', csv, rawDb], {}));
      for (const ext of ['', '-wal', '-shm']) rmSync(rawDb + ext, { force: true });
    }
  }
  const db = keep;
  const env = { ABP_HOME: scratch, ABP_DB: db };
  const raw = await store.raw(db);
  const rows: BenchRow[] = [];
  // Each row as soon as it is measured, so a run cut short still says what it found.
  const push = rows.push.bind(rows);
  rows.push = (...more: BenchRow[]) => {
    for (const r of more) log(`row: ${JSON.stringify({ what: r.what, figure: r.figure, anchor: r.anchor, ratio: r.ratio })}`);
    return push(...more);
  };
  try {
    const [job] = await raw.query('select id, total from jobs order by id desc limit 1', []);
    const jobId = Number(job?.id);
    if (Number(job?.total) !== UNITS) throw new Error(`bench/scale: the job has ${String(job?.total)} units, expected ${UNITS}`);
    const ms = (w: Whole[]) => w.map((x) => x.ms / 1000);
    const mb = (w: Whole[]) => w.map((x) => x.mb);
    const cpu = (w: Whole[]) => w.map((x) => x.cpu_ms / 1000);
    rows.push({
      what: `job creation, ${n} CSV rows, ${s}`,
      measure: '`abp create` (csv enumerator, shell worker), whole process: wall time spawn → exit, peak RSS (VmHWM); a fresh database each run',
      figure: `${spread(ms(create), 1, ' s')} wall (CPU ${spread(cpu(create), 1, ' s')}), peak RSS ${spread(mb(create), 0, ' MB')}`,
      anchor:
        s === 'SQLite'
          ? `raw better-sqlite3 (bench/create-job.js raw: same CSV parse, one transaction, no index), whole process: ${spread(ms(rawCreate), 1, ' s')} wall (CPU ${spread(cpu(rawCreate), 1, ' s')}), peak RSS ${spread(mb(rawCreate), 0, ' MB')}`
          : sqliteCreate
            ? `the same \`abp create\` on SQLite, same run: ${spread(ms(sqliteCreate), 1, ' s')}, peak RSS ${spread(mb(sqliteCreate), 0, ' MB')}`
            : 'SQLite left out of this run (ABP_BENCH_SCALE_SQLITE=0)',
      ratio: s === 'SQLite' ? median(ms(create)) / median(ms(rawCreate)) : sqliteCreate ? median(ms(create)) / median(ms(sqliteCreate)) : null,
      ratio_note: s === 'SQLite' ? 'abp ÷ raw, wall time' : 'PostgreSQL ÷ SQLite, wall time',
      target: `peak RSS ≤ ${RSS_TARGET_MB} MB`,
      raw: { create, raw_create: rawCreate },
    });

    const size = await store.size(db, raw);
    rows.push({
      what: `database size, job of ${n} units, ${s}`,
      measure: `bytes on disk after creation (${size.how})`,
      figure: `${(size.bytes / 2 ** 30).toFixed(2)} GiB (${(size.bytes / UNITS).toFixed(0)} B per unit)`,
      anchor: `the CSV: ${(statSync(csv).size / 2 ** 20).toFixed(0)} MiB`,
      ratio: size.bytes / statSync(csv).size,
      ratio_note: 'database ÷ CSV',
      raw: { bytes: size.bytes },
    });

    // ---- mixed states: the middle tenth of the job finished
    const [first] = await raw.query('select min(id) as lo from work_units where job_id = ?', [jobId]);
    const lo = Number(first?.lo);
    const mid = lo + Math.floor(UNITS / 2);
    log(`${s}: marking units ${mid - UNITS / 20}..${mid + UNITS / 20} finished`);
    const marked = await markMiddle(raw, jobId, mid - UNITS / 20, mid + UNITS / 20);

    // ---- status, in process
    const app = await createApp(resolveConfig(env));
    let statusRows: number[][];
    let listRows: number[][];
    let failedOffset: number;
    let pendingOffset: number;
    try {
      const st = await app.orchestrator.status(jobId);
      if (st.total !== UNITS || st.counts.succeeded !== marked.succeeded || st.counts.failed !== marked.failed) throw new Error(`bench/scale: status says ${JSON.stringify(st)}`);
      const rowSql = 'select * from jobs where id = ?';
      statusRows = await interleaved(3, 200, [() => app.orchestrator.status(jobId), () => raw.query(rowSql, [jobId])]);

      // ---- a page of units by state from the middle: OFFSET against the cursor, the same page
      const [fo] = await raw.query(`select count(*) as c from work_units where job_id = ? and status = 'FAILED' and id <= ?`, [jobId, mid]);
      const [po] = await raw.query(`select count(*) as c from work_units where job_id = ? and status = 'PENDING' and id <= ?`, [jobId, mid]);
      failedOffset = Number(fo?.c);
      pendingOffset = Number(po?.c);
      const byCursor = await app.orchestrator.listUnits(jobId, { status: ['PENDING'] }, { limit: PAGE, after: mid });
      const byOffset = await app.orchestrator.listUnits(jobId, { status: ['PENDING'] }, { limit: PAGE, offset: pendingOffset });
      if (byCursor.length !== PAGE || byCursor.map((u) => u.unit_id).join() !== byOffset.map((u) => u.unit_id).join()) {
        throw new Error('bench/scale: the cursor page and the offset page differ');
      }
      const pageSql = 'select * from work_units where job_id = ? and status = ? and id > ? order by id limit ?';
      log(`${s}: list pages from the middle`);
      listRows = await interleaved(3, 1, [
        () => app.orchestrator.listUnits(jobId, { status: ['PENDING'] }, { limit: PAGE, offset: pendingOffset }),
        () => app.orchestrator.listUnits(jobId, { status: ['FAILED'] }, { limit: PAGE, offset: failedOffset }),
      ]);
      listRows.push(
        ...(await interleaved(3, 50, [
          () => app.orchestrator.listUnits(jobId, { status: ['PENDING'] }, { limit: PAGE, after: mid }),
          () => app.orchestrator.listUnits(jobId, { status: ['FAILED'] }, { limit: PAGE, after: mid }),
          () => app.orchestrator.listUnits(jobId, { status: ['FAILED', 'SUCCEEDED'] }, { limit: PAGE, after: mid }),
          () => raw.query(pageSql, [jobId, 'PENDING', mid, PAGE]),
          () => raw.query(pageSql, [jobId, 'FAILED', mid, PAGE]),
        ])),
      );
    } finally {
      await app.close();
    }
    const [inProcess, rowRead] = statusRows as [number[], number[]];
    const [offPending, offFailed, curPending, curFailed, curTwo, rawPending, rawFailed] = listRows as number[][] as [number[], number[], number[], number[], number[], number[], number[]];

    // ---- over MCP stdio, against a real `abp mcp`
    log(`${s}: MCP`);
    const client = new Client({ name: 'abp-bench', version: '1' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [CLI_ENTRY, 'mcp'], env: { ...process.env, ...env } as Record<string, string>, stderr: 'ignore' }));
    let mcp: number[][];
    try {
      const check = (await client.callTool({ name: 'get_job_status', arguments: { job_id: jobId } })) as { structuredContent?: { total?: number } };
      if (check.structuredContent?.total !== UNITS) throw new Error(`bench/scale: get_job_status says ${JSON.stringify(check.structuredContent)}`);
      // The cursor of a page that ends at the middle unit, as list_units hands it out.
      const cursor = Buffer.from(JSON.stringify({ a: mid })).toString('base64url');
      const page = (await client.callTool({ name: 'list_units', arguments: { job_id: jobId, status: ['PENDING'], limit: PAGE, cursor } })) as {
        structuredContent?: { units?: { unit_id: number }[]; cursor?: string | null };
      };
      if (page.structuredContent?.units?.[0]?.unit_id !== mid + UNITS / 20 + 1 || !page.structuredContent.cursor) {
        throw new Error(`bench/scale: list_units from the middle starts at ${JSON.stringify(page.structuredContent?.units?.[0])}`);
      }
      mcp = await interleaved(5, 200, [
        () => client.callTool({ name: 'get_job_status', arguments: { job_id: jobId } }),
        () => client.callTool({ name: 'list_units', arguments: { job_id: jobId, status: ['PENDING'], limit: PAGE, cursor } }),
        () => client.ping(),
      ]);
    } finally {
      await client.close();
    }
    const [mcpStatus, mcpList, ping] = mcp as [number[], number[], number[]];

    rows.push(
      {
        what: `status of a job of ${n} units, ${s}`,
        measure: 'orchestrator.status (what get_job_status runs), in process; median of 200 calls per run',
        figure: spread(inProcess, 3, ' ms'),
        anchor: `raw read of the job row (${s === 'SQLite' ? 'better-sqlite3' : 'pg'}), interleaved: ${spread(rowRead, 3, ' ms')}`,
        ratio: median(inProcess) / median(rowRead),
        ratio_note: 'abp ÷ raw row read',
        target: '≤ 1 ms median',
        raw: { in_process_ms: inProcess, raw_row_ms: rowRead },
      },
      {
        what: `MCP \`get_job_status\` round trip over stdio, job of ${n} units, ${s}`,
        measure: `real SDK client ↔ \`abp mcp\` process; median of 200 calls per run, interleaved with the ping`,
        figure: spread(mcpStatus, 3, ' ms'),
        anchor: `MCP ping on the same connection: ${spread(ping, 3, ' ms')}`,
        ratio: median(mcpStatus) / median(ping),
        ratio_note: 'get_job_status ÷ ping',
        target: '≤ 1 ms median',
        raw: { mcp_ms: mcpStatus, ping_ms: ping },
      },
      {
        what: `a page of ${PAGE} PENDING units from the middle of a job of ${n}, ${s}`,
        measure: `orchestrator.listUnits (what list_units runs) with a cursor (after = unit ${mid.toLocaleString('en')}); median of 50 calls per run; OFFSET: one call per run, interleaved`,
        figure: spread(curPending, 3, ' ms'),
        anchor: `the same page by OFFSET ${pendingOffset.toLocaleString('en')} (the only way before): ${spread(offPending, 1, ' ms')}; raw SQL keyset read: ${spread(rawPending, 3, ' ms')}`,
        ratio: median(offPending) / median(curPending),
        ratio_note: 'OFFSET ÷ cursor',
        target: '≤ 20 ms',
        raw: { cursor_ms: curPending, offset_ms: offPending, raw_ms: rawPending },
      },
      {
        what: `a page of ${PAGE} FAILED units from the middle of a job of ${n} (FAILED: 1 in 4 of the middle tenth), ${s}`,
        measure: `orchestrator.listUnits with a cursor; median of 50 calls per run. Two states at once (FAILED, SUCCEEDED), one index stretch each, merged: ${spread(curTwo, 3, ' ms')}`,
        figure: spread(curFailed, 3, ' ms'),
        anchor: `the same page by OFFSET ${failedOffset.toLocaleString('en')}: ${spread(offFailed, 1, ' ms')}; raw SQL keyset read: ${spread(rawFailed, 3, ' ms')}`,
        ratio: median(offFailed) / median(curFailed),
        ratio_note: 'OFFSET ÷ cursor',
        target: '≤ 20 ms',
        raw: { cursor_ms: curFailed, offset_ms: offFailed, raw_ms: rawFailed, two_states_ms: curTwo },
      },
      {
        what: `MCP \`list_units\` round trip, ${PAGE} PENDING units from the middle of ${n}, ${s}`,
        measure: 'real SDK client ↔ `abp mcp`, with the cursor list_units hands out; median of 200 calls per run, interleaved with the ping',
        figure: spread(mcpList, 3, ' ms'),
        anchor: `MCP ping on the same connection: ${spread(ping, 3, ' ms')}`,
        ratio: median(mcpList) / median(ping),
        ratio_note: 'list_units ÷ ping',
        target: '≤ 20 ms',
        raw: { mcp_ms: mcpList, ping_ms: ping },
      },
    );

    // ---- the full JSONL export, whole process, against wc -l of the same file
    const out = join(scratch, 'export.jsonl');
    const exp: Whole[] = [];
    const wc: Whole[] = [];
    for (let r = 0; r < runs; r++) {
      log(`${s}: abp results --format jsonl, run ${r + 1} of ${runs}`);
      exp.push(await whole(scratch, process.execPath, [CLI_ENTRY, 'results', String(jobId), '--format', 'jsonl'], env, out));
      log(`${s}: export ${JSON.stringify(exp.at(-1))}`);
      wc.push(await whole(scratch, 'wc', ['-l', out], {}));
    }
    const bytes = statSync(out).size;
    rmSync(out, { force: true });
    rows.push({
      what: `full JSONL export, ${n} units, ${s}`,
      measure: `\`abp results JOB --format jsonl > file\` (${(bytes / 2 ** 30).toFixed(2)} GiB), whole process: wall time, peak RSS`,
      figure: `${spread(ms(exp), 1, ' s')} wall (CPU ${spread(cpu(exp), 1, ' s')}), peak RSS ${spread(mb(exp), 0, ' MB')}`,
      anchor: `\`wc -l\` of the same file, after each run: ${spread(ms(wc), 1, ' s')}`,
      ratio: median(ms(exp)) / median(ms(wc)),
      ratio_note: `export ÷ wc -l (${((bytes / 2 ** 20) / (median(ms(exp)) || 1)).toFixed(0)} MiB/s, ${(UNITS / median(ms(exp)) / 1000).toFixed(0)}k lines/s)`,
      target: `peak RSS ≤ ${RSS_TARGET_MB} MB`,
      raw: { export: exp, wc, bytes },
    });
  } finally {
    await raw.close();
    await store.drop(db);
  }
  return { rows, create };
}

export async function run(): Promise<BenchRow[]> {
  const scratch = mkdtempSync(join(tmpdir(), 'abp-bench-scale-'));
  let server: PostgresServer | undefined;
  try {
    writeReporter(scratch);
    const csv = join(scratch, 'items.csv');
    log(`writing ${n} CSV rows`);
    await writeCsv(csv);
    let k = 0;
    const sqlite: Store = {
      name: 'SQLite',
      async fresh() {
        return join(scratch, `abp-${k++}.db`);
      },
      async drop(db) {
        for (const ext of ['', '-wal', '-shm']) rmSync(db + ext, { force: true });
      },
      async raw(db) {
        return rawSqlite(db);
      },
      async size(db, raw) {
        await raw.exec('pragma wal_checkpoint(TRUNCATE)');
        const wal = existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0;
        return { bytes: statSync(db).size + wal, how: `the database file after pragma wal_checkpoint(TRUNCATE), WAL ${wal} B` };
      },
    };
    const { rows, create }: { rows: BenchRow[]; create: Whole[] | null } = WITH_SQLITE ? await measure(sqlite, scratch, csv, null) : { rows: [], create: null };
    if (WITH_PG) {
      server = await startPostgres();
      const srv = server;
      const postgres: Store = {
        name: 'PostgreSQL',
        fresh: () => createTestDatabase(srv.url),
        drop: (db) => dropTestDatabase(db, srv.url),
        raw: (db) => rawPg(db),
        async size(_db, raw) {
          await raw.exec('checkpoint');
          const [r] = await raw.query('select pg_database_size(current_database()) as b', []);
          return { bytes: Number(r?.b), how: 'pg_database_size after CHECKPOINT, indexes included, WAL not' };
        },
      };
      rows.push(...(await measure(postgres, scratch, csv, create)).rows);
    }
    return rows;
  } finally {
    await server?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

// Run alone: node dist/bench/scale.js
if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const rows = await run();
  for (const r of rows) process.stdout.write(`${r.what} | ${r.figure} | ${r.anchor} | ${r.ratio?.toFixed(2)} ${r.ratio_note}\n`);
}
