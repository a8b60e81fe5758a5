import { z } from 'zod';
import { AbpError } from '../domain/errors.js';
import { isTerminalJob } from '../domain/states.js';
import type { EVENT_TYPES } from '../wire/schemas.js';
import type { EventView, Monitor } from '../orchestrator/monitor.js';
import { idParam, parseQuery } from './params.js';
import { parseJson } from '../wire/views.js';
import type { RouteContext, Router } from './router.js';
import { isoTime, isoTimeOrNull as iso } from '../domain/iso-time.js';

export interface StreamOptions {
  /** How often the events table is polled for new rows. */
  pollMs: number;
  /** How often a keep-alive comment goes out on an idle stream. */
  keepAliveMs: number;
}

const PAGE = 500;
const SinceQuery = z.strictObject({
  since: z.union([z.literal('now'), z.coerce.number().int().min(0)]).optional().describe('a seq to replay after, or "now" for only what happens from now on'),
});

/** Stored event types map onto the stream's types; everything else is a log line. */
function streamType(kind: string): Exclude<(typeof EVENT_TYPES)[number], 'activity'> {
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
 *
 * Between the stored events go `activity` frames, read from unit_events at the
 * same poll: each running unit's newest conversation event, summarised in a line,
 * sent when it changes, and a last frame (`running: false`) when the unit stops
 * running. They carry no id: they are a live view, not history, and are never
 * replayed.
 */
export function eventRoutes(router: Router, options: StreamOptions): void {
  router.add('GET', '/jobs/:id/events', (ctx) => stream(ctx, options));
}

async function stream(ctx: RouteContext, options: StreamOptions): Promise<void> {
  const { req, res, app } = ctx;
  const id = idParam(ctx.params, 'id');
  const { since } = parseQuery(ctx.url, SinceQuery);
  const header = req.headers['last-event-id'];
  let cursor = typeof since === 'number' ? since : 0;
  // A client that resumes says where it was; only a first connection asks for "now".
  let fromNow = since === 'now';
  if (typeof header === 'string' && header.trim() !== '') {
    if (!/^\d+$/.test(header.trim())) throw new AbpError('invalid_input', `Last-Event-ID: expected an event seq, got ${JSON.stringify(header)}`);
    cursor = Number(header.trim());
    fromNow = false;
  }
  const orchestrator = app.orchestrator;
  const first = await orchestrator.status(id);
  if (fromNow) cursor = await orchestrator.monitor.lastEventSeq(id);
  const activity = new LiveActivity(orchestrator.monitor, id);

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
  write(frame('hello', { seq: null, job_id: id, type: 'hello', kind: 'hello', data: { job: first, since: cursor }, at: isoTime() }));
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
      // On a final job this sends only the last frames of the units that were running.
      const changes = closed ? [] : await activity.changes(job.counts.running > 0);
      const at = isoTime();
      for (const data of changes) write(frame('activity', { seq: null, job_id: id, type: 'activity', kind: 'activity', data, at }));
      if (changes.length > 0) lastWrite = Date.now();
      if (isTerminalJob(job.status)) {
        write(frame('end', { seq: null, job_id: id, type: 'end', kind: 'end', data: { job, last_seq: cursor }, at: isoTime() }));
        break;
      }
      if (Date.now() - lastWrite >= options.keepAliveMs) {
        write(`: keep-alive ${isoTime()}\n\n`);
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

// ---- live activity ------------------------------------------------------------

/** How many of a unit's newest events are read to summarise the newest: a tool's result names its call a few events back. */
const TAIL = 6;
/** The longest summary line, in characters. */
const SUMMARY_MAX = 200;

/** The data of one `activity` frame. */
export interface ActivityData {
  unit_id: number;
  item_id: string;
  attempt: number;
  /** false on the last frame of a unit that has stopped running (its outcome is a `unit` event). */
  running: boolean;
  started_at: string | null;
  /** The newest conversation event of this attempt; null before the first one. */
  latest: { event_id: number; kind: string; what: Activity['what']; summary: string; at: string | null } | null;
}

/**
 * What one stream has sent about a job's running units, so that only changes go
 * out. Reads only: the executor's hot path writes nothing for it.
 */
export class LiveActivity {
  private readonly sent = new Map<number, { item_id: string; attempt: number; event_id: number | null }>();

  constructor(
    private readonly monitor: Pick<Monitor, 'runningUnitsActivity' | 'unitEventsTail'>,
    private readonly jobId: number,
  ) {}

  /** The units whose activity changed since the last call. `anyRunning` false (the job's counter) skips the read. */
  async changes(anyRunning: boolean): Promise<ActivityData[]> {
    if (!anyRunning && this.sent.size === 0) return [];
    const rows = anyRunning ? await this.monitor.runningUnitsActivity(this.jobId) : [];
    const out: ActivityData[] = [];
    const running = new Set<number>();
    for (const row of rows) {
      running.add(row.unit_id);
      const before = this.sent.get(row.unit_id);
      if (before && before.attempt === row.attempt && before.event_id === row.event_id) continue;
      this.sent.set(row.unit_id, { item_id: row.item_id, attempt: row.attempt, event_id: row.event_id });
      let latest: ActivityData['latest'] = null;
      if (row.event_id !== null) {
        const tail = await this.monitor.unitEventsTail(row.unit_id, row.event_id, TAIL);
        const newest = tail[0];
        // An event of an earlier attempt is not this attempt's activity.
        if (newest && newest.attempt === row.attempt) {
          latest = { event_id: newest.id, kind: newest.kind, ...summarise(tail.filter((e) => e.attempt === row.attempt)), at: iso(newest.created_at) };
        }
      }
      out.push({ unit_id: row.unit_id, item_id: row.item_id, attempt: row.attempt, running: true, started_at: iso(row.started_at), latest });
    }
    for (const [unitId, was] of this.sent) {
      if (running.has(unitId)) continue;
      this.sent.delete(unitId);
      out.push({ unit_id: unitId, item_id: was.item_id, attempt: was.attempt, running: false, started_at: null, latest: null });
    }
    return out;
  }
}

/** Whitespace folded to single spaces, cut to `max` characters. */
function oneLine(text: string, max = SUMMARY_MAX): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** The argument that says what a tool call is about, in the order the common tools name it. */
const MAIN_ARGUMENTS = ['file_path', 'notebook_path', 'path', 'command', 'pattern', 'url', 'query', 'description', 'prompt', 'skill'];

function toolCall(name: unknown, input: unknown): string {
  const args = input !== null && typeof input === 'object' ? (input as Record<string, unknown>) : {};
  const key = MAIN_ARGUMENTS.find((k) => typeof args[k] === 'string') ?? Object.keys(args).find((k) => typeof args[k] === 'string');
  const tool = typeof name === 'string' && name ? name : 'tool';
  return key ? `${tool} ${String(args[key])}` : tool;
}

const blocksOf = (data: any): any[] => (Array.isArray(data?.content) ? data.content : []);

function resultText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((b: any) => (typeof b?.text === 'string' ? b.text : '')).join(' ');
  return '';
}


/** What a unit did last: which sort of step (a tool call, a tool's result, text, thinking, or another event) and one line about it. */
export interface Activity {
  what: 'tool_use' | 'tool_result' | 'text' | 'thinking' | 'event';
  summary: string;
}

/**
 * One line that says what a unit is doing, from its newest events (newest
 * first): the tool it called and its main argument, or the start of its text.
 * Knows the shapes the claude, agent-cli and http-llm workers record; anything
 * else is its kind and the start of its data.
 */
export function summarise(tail: { kind: string; data: string }[]): Activity {
  const [newest, ...older] = tail;
  if (!newest) return { what: 'event', summary: '' };
  const d = parseJson(newest.data) as any;
  const event = (summary: string): Activity => ({ what: 'event', summary: oneLine(summary) });
  const text = (summary: string): Activity => ({ what: 'text', summary: oneLine(summary) });
  const thinking: Activity = { what: 'thinking', summary: 'thinking…' };
  switch (newest.kind) {
    case 'assistant': {
      const content = blocksOf(d);
      const tools = content.filter((b) => b?.type === 'tool_use');
      if (tools.length > 0) return { what: 'tool_use', summary: oneLine(tools.map((b) => toolCall(b.name, b.input)).join('; ')) };
      const said = content
        .filter((b) => b?.type === 'text' && typeof b.text === 'string')
        .map((b) => b.text)
        .join(' ');
      if (said.trim()) return text(said);
      if (content.some((b) => b?.type === 'thinking')) return thinking;
      if (typeof d?.text === 'string' && d.text.trim()) return text(d.text);
      break;
    }
    case 'user': {
      const results = blocksOf(d).filter((b) => b?.type === 'tool_result');
      const last = results.at(-1);
      if (last) {
        // The call this result answers, from the assistant events just before it.
        let call = 'tool';
        for (const e of older) {
          if (e.kind !== 'assistant') continue;
          const use = blocksOf(parseJson(e.data)).find((b) => b?.type === 'tool_use' && b.id === last.tool_use_id);
          if (use) {
            call = toolCall(use.name, use.input);
            break;
          }
        }
        return { what: 'tool_result', summary: oneLine(`${call} → ${last.is_error ? 'error: ' : ''}${resultText(last.content)}`) };
      }
      if (typeof d?.content === 'string') return text(d.content);
      break;
    }
    case 'init':
      return event(`started${typeof d?.model === 'string' ? ` (${d.model})` : ''}`);
    case 'result':
      return event(`finished: ${d?.is_error ? 'error' : (d?.subtype ?? 'done')}${typeof d?.result === 'string' ? ` · ${d.result}` : ''}`);
    case 'api_retry':
      return event(`API retry${d?.attempt ? ` ${d.attempt}` : ''}${d?.error_status ? ` (HTTP ${d.error_status})` : ''}`);
    case 'request':
      return event(`request to ${d?.model ?? d?.url ?? 'the API'}`);
    case 'stdout':
      return text(typeof d === 'string' ? d : JSON.stringify(d));
  }
  // JSON Lines agents (codex) report items: a command, a message, a change.
  const item = d?.item;
  if (item && typeof item === 'object') {
    if (item.type === 'command_execution' && typeof item.command === 'string') return { what: 'tool_use', summary: oneLine(`$ ${item.command}`) };
    if (item.type === 'agent_message' && typeof item.text === 'string') return text(item.text);
    if (item.type === 'reasoning') return thinking;
    if (item.type === 'mcp_tool_call') return { what: 'tool_use', summary: oneLine(`${item.server ?? 'mcp'}.${item.tool ?? 'tool'}`) };
    if (item.type === 'web_search' && typeof item.query === 'string') return { what: 'tool_use', summary: oneLine(`search ${item.query}`) };
    if (item.type === 'file_change' && Array.isArray(item.changes)) return { what: 'tool_use', summary: oneLine(`edit ${item.changes.map((c: any) => c?.path ?? '').join(', ')}`) };
    if (typeof item.type === 'string') return event(`${newest.kind}: ${item.type}`);
  }
  return event(`${newest.kind}: ${typeof d === 'string' ? d : JSON.stringify(d)}`);
}
