import type pg from 'pg';
import { errorMessage } from '../domain/errors.js';

/** The channel executors LISTEN on; the payload is the job id that has runnable units. */
export const WORK_CHANNEL = 'abp_work';

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/**
 * pg, loaded on first use: a SQLite store never pays for it. Our bigint columns
 * hold epoch milliseconds, counters and token counts, all far below 2^53, and
 * COUNT/SUM return int8/numeric: `types` reads them as JS numbers so the
 * repository sees the same values as on SQLite. Per client, not pg's global
 * parsers, so that other pg users in the process (the sql enumerator) are untouched.
 */
let loaded: Promise<{ pg: typeof pg; types: pg.CustomTypesConfig }> | undefined;
function loadPg() {
  return (loaded ??= import('pg').then(({ default: pg }) => {
    const types = {
      getTypeParser(oid: number, format?: string) {
        if (oid === INT8_OID || oid === NUMERIC_OID) return (value: string) => (value === null ? null : Number(value));
        return pg.types.getTypeParser(oid, format as 'text');
      },
    } as pg.CustomTypesConfig;
    return { pg, types };
  }));
}

export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//.test(db);
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}

export async function createPool(url: string, size: number, log: (message: string) => void): Promise<pg.Pool> {
  const { pg, types } = await loadPg();
  const pool = new pg.Pool({
    connectionString: url,
    max: size,
    types,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: 'abp',
  });
  // An idle client whose server went away emits here; without a listener the
  // process would crash. The pool drops the client and opens a new one on demand.
  pool.on('error', (err) => log(`database connection lost: ${errorMessage(err)}`));
  // A client in use when its connection drops emits 'error' too, and the pool only
  // listens while the client is idle. The query in flight fails on its own (and is
  // retried by its caller); this listener keeps the process alive.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/**
 * A dedicated connection that LISTENs for work notifications. It reconnects with
 * backoff when the connection drops; meanwhile the executor's polling covers.
 */
export class WorkListener {
  private client: pg.Client | undefined;
  private closed = false;
  private retryMs = 250;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string,
    private readonly onWork: (jobId: number) => void,
    private readonly log: (message: string) => void,
  ) {}

  async start(): Promise<void> {
    if (this.closed) return;
    const { pg, types } = await loadPg();
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.url, types, application_name: 'abp-listen' });
    client.on('notification', (msg) => {
      if (msg.channel === WORK_CHANNEL) this.onWork(Number(msg.payload));
    });
    client.on('error', (err) => {
      this.log(`work notifications: connection lost (${errorMessage(err)}); polling until it is back`);
      this.reconnect(client);
    });
    client.on('end', () => this.reconnect(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${WORK_CHANNEL}`);
      this.client = client;
      this.retryMs = 250;
    } catch (err) {
      this.log(`work notifications: cannot listen (${errorMessage(err)}); retrying in ${this.retryMs} ms`);
      this.reconnect(client);
    }
  }

  private reconnect(client: pg.Client): void {
    if (this.closed || (this.client !== undefined && this.client !== client) || this.timer) return;
    this.client = undefined;
    client.removeAllListeners('end');
    void client.end().catch(() => undefined);
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 10_000);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.start();
    }, wait);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    if (client) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
    }
  }
}
