import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport, type EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { App } from '../app.js';
import { BATCH_REFUSED, checkMessage, errorReply, INVALID_REQUEST, PARSE_ERROR, type JsonRpcErrorReply } from '../mcp/jsonrpc.js';
import { createMcpServer } from '../mcp/server.js';
import { apiKeyOwner } from '../mcp/tasks.js';
import { readJson } from './body.js';
import { HttpError } from './errors.js';
import { presentedKey } from './security.js';

/** How long a client that lost a stream waits before it reconnects (the SSE `retry` field). */
const RETRY_MS = 1000;

export interface EventLimits {
  /** Events kept per stream; older ones are dropped, and a resume from before them is refused. */
  perStream: number;
  /** Streams kept per session, oldest dropped first. */
  streams: number;
  /** Bytes of messages kept per session, oldest streams dropped first. */
  bytes: number;
  /** A stream with nothing new for this long is dropped. */
  ttlMs: number;
}

const LIMITS: EventLimits = { perStream: 500, streams: 100, bytes: 8 * 1024 * 1024, ttlMs: 10 * 60_000 };

interface Stream {
  /** Sequence number of the first event still kept. */
  first: number;
  events: { message: JSONRPCMessage; bytes: number }[];
  bytes: number;
  touched: number;
}

/**
 * What one MCP session sent on its SSE streams, so that a client that lost a
 * stream resumes it with Last-Event-ID. In memory and bounded: it survives the
 * connection, not the process. One store per session, so an event id is only
 * ever replayed to the session that received it.
 */
export class SessionEvents implements EventStore {
  private readonly streams = new Map<string, Stream>();
  private bytes = 0;

  constructor(
    private readonly limits: EventLimits = LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const now = this.now();
    this.expire(now);
    let stream = this.streams.get(streamId);
    if (!stream) {
      stream = { first: 0, events: [], bytes: 0, touched: now };
      this.streams.set(streamId, stream);
    }
    const bytes = Buffer.byteLength(JSON.stringify(message));
    stream.events.push({ message, bytes });
    stream.bytes += bytes;
    stream.touched = now;
    this.bytes += bytes;
    const id = `${streamId}.${stream.first + stream.events.length - 1}`;
    while (stream.events.length > this.limits.perStream) this.dropFirst(stream);
    // The stream just written to goes last, so the oldest are dropped first.
    this.streams.delete(streamId);
    this.streams.set(streamId, stream);
    for (const [oldId] of this.streams) {
      if (this.streams.size <= this.limits.streams && this.bytes <= this.limits.bytes) break;
      if (oldId !== streamId) this.drop(oldId);
      else break;
    }
    return id;
  }

  /*
   * No getStreamIdForEventId: with it, the SDK refuses a resume (409) while it still
   * thinks the lost connection is open, which it may for a long time when the peer
   * vanished; without it, the resume takes the stream over. `problem` is checked first
   * (McpEndpoint.handle), so an unknown id still gets a clear 400.
   */

  /** Why a resume from this id cannot be served, or undefined when it can. */
  problem(lastEventId: string): string | undefined {
    this.expire(this.now());
    const at = parse(lastEventId);
    const stream = at && this.streams.get(at.streamId);
    if (!at || !stream) return `unknown or expired Last-Event-ID ${JSON.stringify(lastEventId)}: events are kept ${this.limits.ttlMs / 1000} s; call the tool again`;
    if (at.seq < stream.first - 1) return `the events after Last-Event-ID ${lastEventId} were dropped (at most ${this.limits.perStream} are kept per stream); call the tool again`;
    return undefined;
  }

  async replayEventsAfter(lastEventId: string, { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> }): Promise<string> {
    const problem = this.problem(lastEventId);
    if (problem) throw new Error(problem);
    const { streamId, seq: last } = parse(lastEventId) as { streamId: string; seq: number };
    const stream = this.streams.get(streamId) as Stream;
    for (let seq = Math.max(last + 1, stream.first); seq < stream.first + stream.events.length; seq++) {
      await send(`${streamId}.${seq}`, (stream.events[seq - stream.first] as { message: JSONRPCMessage }).message);
    }
    return streamId;
  }

  /** Events and bytes kept, for tests and benchmarks. */
  size(): { streams: number; events: number; bytes: number } {
    let events = 0;
    for (const s of this.streams.values()) events += s.events.length;
    return { streams: this.streams.size, events, bytes: this.bytes };
  }

  private expire(now: number): void {
    for (const [id, stream] of this.streams) {
      if (now - stream.touched > this.limits.ttlMs) this.drop(id);
    }
  }

  private dropFirst(stream: Stream): void {
    const gone = stream.events.shift();
    if (!gone) return;
    stream.first++;
    stream.bytes -= gone.bytes;
    this.bytes -= gone.bytes;
  }

  private drop(streamId: string): void {
    const stream = this.streams.get(streamId);
    if (!stream) return;
    this.bytes -= stream.bytes;
    this.streams.delete(streamId);
  }
}

function parse(eventId: string): { streamId: string; seq: number } | undefined {
  const dot = eventId.lastIndexOf('.');
  const seq = Number(eventId.slice(dot + 1));
  if (dot <= 0 || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  return { streamId: eventId.slice(0, dot), seq };
}

/**
 * MCP over Streamable HTTP at /mcp: one server and transport per session. Each
 * stream opens with a priming event (an id and a `retry` field), and a client that
 * lost a stream gets what it missed with GET and Last-Event-ID.
 */
export class McpEndpoint {
  private readonly sessions = new Map<string, { transport: StreamableHTTPServerTransport; events: SessionEvents }>();

  constructor(private readonly app: App) {}

  /**
   * One request to /mcp. A POST body is read here (up to `maxBody` bytes) and must be
   * one JSON-RPC message; anything else gets a JSON-RPC error with id null (or the
   * request's own id) and an HTTP status, before any session is looked at:
   * 413 and -32600 for a body over the limit, 400 and -32700 for one that is not
   * JSON, 400 and -32600 for a batch (one error for the whole array: the HTTP
   * exchange already ties it to the POST, and a 2025-06-18 client reads no array)
   * or for JSON that is no JSON-RPC message.
   */
  async handle(req: IncomingMessage, res: ServerResponse, maxBody: number): Promise<void> {
    let body: unknown;
    if (req.method === 'POST') {
      try {
        body = await readJson(req, maxBody);
      } catch (err) {
        if (!(err instanceof HttpError)) throw err;
        const tooLarge = err.status === 413;
        const message = tooLarge ? `Invalid Request: ${err.message}` : `Parse error: ${err.message}`;
        reply(res, err.status, errorReply(null, tooLarge ? INVALID_REQUEST : PARSE_ERROR, message, err.details), err.headers);
        return;
      }
      if (body === undefined) {
        reply(res, 400, errorReply(null, INVALID_REQUEST, 'Invalid Request: the body is empty; POST one JSON-RPC message'));
        return;
      }
      if (Array.isArray(body)) {
        reply(res, 400, errorReply(null, INVALID_REQUEST, BATCH_REFUSED));
        return;
      }
      const checked = checkMessage(body);
      if (!checked.ok) {
        reply(res, 400, checked.replies[0] as JsonRpcErrorReply);
        return;
      }
    }
    const sessionId = req.headers['mcp-session-id'] as string | undefined;
    let session = sessionId ? this.sessions.get(sessionId) : undefined;
    if (!session) {
      if (sessionId || req.method !== 'POST' || !isInitializeRequest(body)) {
        refuse(res, sessionId ? 404 : 400, sessionId ? 'unknown session; initialize again' : 'no session: send an initialize request first');
        return;
      }
      const events = new SessionEvents();
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => void this.sessions.set(id, { transport, events }),
        eventStore: events,
        retryInterval: RETRY_MS,
      });
      transport.onclose = () => {
        if (transport.sessionId) this.sessions.delete(transport.sessionId);
      };
      // Tasks belong to the API key (a dashboard session acts for the key's holder, who let it in).
      const key = presentedKey(req);
      await createMcpServer({ app: async () => this.app }, key === undefined ? 'dashboard-session' : apiKeyOwner(key)).connect(transport);
      session = { transport, events };
    }
    const lastEventId = req.headers['last-event-id'];
    const problem = req.method === 'GET' && typeof lastEventId === 'string' ? session.events.problem(lastEventId) : undefined;
    if (problem) {
      refuse(res, 400, problem);
      return;
    }
    await session.transport.handleRequest(req, res, body);
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.transport.close().catch(() => undefined)));
    this.sessions.clear();
  }
}

function refuse(res: ServerResponse, status: number, message: string): void {
  reply(res, status, errorReply(null, -32000, message));
}

function reply(res: ServerResponse, status: number, error: JsonRpcErrorReply, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(error);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}
