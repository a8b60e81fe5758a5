import { z } from 'zod';
import { AbpError } from '../domain/errors.js';
import { isTerminalJob } from '../domain/states.js';
import type { EVENT_TYPES } from '../domain/wire.js';
import type { EventView } from '../orchestrator/monitor.js';
import { idParam, parseQuery } from './params.js';
import type { RouteContext, Router } from './router.js';

export interface StreamOptions {
  /** How often the events table is polled for new rows. */
  pollMs: number;
  /** How often a keep-alive comment goes out on an idle stream. */
  keepAliveMs: number;
}

const PAGE = 500;
const SinceQuery = z.strictObject({ since: z.coerce.number().int().min(0).optional() });

/** Stored event types map onto the stream's types; everything else is a log line. */
function streamType(kind: string): (typeof EVENT_TYPES)[number] {
  return kind === 'status' || kind === 'unit' || kind === 'checkpoint' ? kind : 'log';
}

/** One SSE frame. Data is JSON on one line, so no newline can split a frame. */
function frame(type: string, data: unknown, id?: number): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}

function wire(event: EventView) {
  return { seq: event.seq, job_id: event.job_id, type: streamType(event.type), kind: event.type, data: event.data, at: event.at };
}

/**
 * GET /jobs/{id}/events: server-sent events read from the events table. The SSE
 * id is the table's seq, so `Last-Event-ID` (or `?since=`) replays exactly what a
 * client missed, across server restarts. The table is polled rather than
 * notified, which works on every store. The stream ends once the job is final and
 * every event up to its final status has gone out.
 */
export function eventRoutes(router: Router, options: StreamOptions): void {
  router.add('GET', '/jobs/:id/events', (ctx) => stream(ctx, options));
}

async function stream(ctx: RouteContext, options: StreamOptions): Promise<void> {
  const { req, res, app } = ctx;
  const id = idParam(ctx.params, 'id');
  const { since } = parseQuery(ctx.url, SinceQuery);
  const header = req.headers['last-event-id'];
  let cursor = since ?? 0;
  if (typeof header === 'string' && header.trim() !== '') {
    if (!/^\d+$/.test(header.trim())) throw new AbpError('invalid_input', `Last-Event-ID: expected an event seq, got ${JSON.stringify(header)}`);
    cursor = Number(header.trim());
  }
  const orchestrator = app.orchestrator;
  const first = await orchestrator.status(id);

  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    // Proxies must not buffer the stream.
    'x-accel-buffering': 'no',
  });
  let closed = false;
  const abort = new AbortController();
  req.on('close', () => {
    closed = true;
    abort.abort();
  });
  const write = (text: string) => {
    if (!closed) res.write(text);
  };
  // How long a browser waits before reconnecting by itself.
  write('retry: 2000\n');
  write(frame('hello', { seq: null, job_id: id, type: 'hello', kind: 'hello', data: { job: first, since: cursor }, at: new Date().toISOString() }));
  let lastWrite = Date.now();

  try {
    while (!closed) {
      // The job is read before its events: a final status seen here is already in the table.
      const job = await orchestrator.status(id);
      let page: EventView[];
      do {
        page = await orchestrator.monitor.events(id, cursor, PAGE);
        for (const event of page) {
          write(frame(streamType(event.type), wire(event), event.seq));
          cursor = event.seq;
        }
        if (page.length > 0) lastWrite = Date.now();
      } while (page.length === PAGE && !closed);
      if (isTerminalJob(job.status)) {
        write(frame('end', { seq: null, job_id: id, type: 'end', kind: 'end', data: { job, last_seq: cursor }, at: new Date().toISOString() }));
        break;
      }
      if (Date.now() - lastWrite >= options.keepAliveMs) {
        write(`: keep-alive ${new Date().toISOString()}\n\n`);
        lastWrite = Date.now();
      }
      await sleep(options.pollMs, abort.signal);
    }
  } finally {
    if (!closed) res.end();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
