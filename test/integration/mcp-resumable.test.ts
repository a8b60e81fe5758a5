import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SessionEvents } from '../../src/http/mcp-endpoint.js';
import { Sandbox } from '../helpers/cli.js';
import { KEY, slowJob, startServe, type Served } from '../helpers/serve.js';

/** One SSE frame as sent: every field, raw. */
interface Frame {
  id?: string;
  retry?: string;
  data: string;
}

/** Reads an SSE response frame by frame, so a test can drop the connection whenever it likes. */
class Stream {
  readonly frames: Frame[] = [];
  private buffer = '';
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();

  constructor(readonly response: Response) {
    if (!response.body) throw new Error(`no body: ${response.status}`);
    this.reader = response.body.getReader();
  }

  /** Reads until a frame matches; throws if the stream ends first. */
  async until(match: (f: Frame) => boolean): Promise<Frame> {
    for (;;) {
      const found = this.frames.find(match);
      if (found) return found;
      const { done, value } = await this.reader.read();
      if (done) throw new Error(`the stream ended first; frames: ${JSON.stringify(this.frames)}`);
      this.buffer += this.decoder.decode(value, { stream: true });
      let end: number;
      while ((end = this.buffer.indexOf('\n\n')) >= 0) {
        const frame: Frame = { data: '' };
        for (const line of this.buffer.slice(0, end).split('\n')) {
          const colon = line.indexOf(':');
          const [field, value] = colon < 0 ? [line, ''] : [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, '')];
          if (field === 'id') frame.id = value;
          else if (field === 'retry') frame.retry = value;
          else if (field === 'data') frame.data += value;
        }
        this.buffer = this.buffer.slice(end + 2);
        if (frame.id !== undefined || frame.data !== '') this.frames.push(frame);
      }
    }
  }

  /** The JSON-RPC message answering `id`, once it arrives. */
  async reply(id: number): Promise<any> {
    const frame = await this.until((f) => f.data !== '' && JSON.parse(f.data).id === id);
    return JSON.parse(frame.data);
  }

  drop(): Promise<void> {
    return this.reader.cancel();
  }
}

let sb: Sandbox;
let served: Served;
let session = '';
let nextId = 1;

function headers(extra: Record<string, string> = {}): Record<string, string> {
  return {
    authorization: `Bearer ${KEY}`,
    accept: 'application/json, text/event-stream',
    'content-type': 'application/json',
    'mcp-protocol-version': '2025-11-25',
    ...(session ? { 'mcp-session-id': session } : {}),
    ...extra,
  };
}

async function post(message: Record<string, unknown>): Promise<Stream> {
  const response = await fetch(`${served.url}/mcp`, { method: 'POST', headers: headers(), body: JSON.stringify(message) });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/event-stream');
  return new Stream(response);
}

async function callTool(name: string, args: Record<string, unknown>): Promise<any> {
  const id = nextId++;
  const stream = await post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
  const reply = await stream.reply(id);
  expect(reply.result.isError, JSON.stringify(reply)).toBeFalsy();
  return reply.result.structuredContent;
}

describe('Streamable HTTP resumability', () => {
  beforeEach(async () => {
    sb = new Sandbox();
    writeFileSync(sb.path('rows.csv'), 'id,text\na,alpha\nb,beta\n');
    served = await startServe(sb);
    session = '';
    const init = await post({ jsonrpc: '2.0', id: nextId++, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    session = init.response.headers.get('mcp-session-id') as string;
    expect(session).toBeTruthy();
    await init.drop();
    const initialized = await fetch(`${served.url}/mcp`, { method: 'POST', headers: headers(), body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
    expect(initialized.status).toBe(202);
  });
  afterEach(async () => {
    await served.stop();
    await sb.cleanup();
  });

  it('a client that drops the stream of a long start_job wait resumes it with Last-Event-ID and gets the result', async () => {
    const job = await callTool('create_job', slowJob(sb.path('rows.csv'), { sleepSeconds: 3 }));

    const id = nextId++;
    const stream = await post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'start_job', arguments: { job_id: job.job_id, wait_seconds: 20 }, _meta: { progressToken: 'p' } } });
    // The stream opens with a priming event: an id to resume from, a retry interval, no message.
    const priming = await stream.until(() => true);
    expect(priming.id).toMatch(/\S/);
    expect(Number(priming.retry)).toBeGreaterThan(0);
    expect(priming.data).toBe('');
    // The connection drops while the call still waits: its test unit sleeps 3 s, so no answer can have come yet.
    expect(stream.frames.some((f) => f.data !== '' && JSON.parse(f.data).id === id)).toBe(false);
    await stream.drop();

    // The client comes back with the last id it saw and gets the rest of the stream, the result included.
    const resumed = await fetch(`${served.url}/mcp`, { method: 'GET', headers: headers({ accept: 'text/event-stream', 'last-event-id': priming.id as string }) });
    expect(resumed.status).toBe(200);
    const rest = new Stream(resumed);
    const reply = await rest.reply(id);
    await rest.drop();
    expect(reply.result.isError).toBeFalsy();
    expect(reply.result.structuredContent.job).toMatchObject({ job_id: job.job_id, status: 'TESTING' });
    expect(reply.result.structuredContent.test_unit).toMatchObject({ status: 'SUCCEEDED', output: 'alpha' });
  });

  it('refuses a Last-Event-ID it does not hold, with a clear error', async () => {
    const resumed = await fetch(`${served.url}/mcp`, { method: 'GET', headers: headers({ accept: 'text/event-stream', 'last-event-id': 'no-such-stream.3' }) });
    expect(resumed.status).toBe(400);
    expect((await resumed.json()).error.message).toMatch(/unknown or expired Last-Event-ID "no-such-stream.3".*call the tool again/);
  });
});

describe('the per-session event store', () => {
  const message = (n: number) => ({ jsonrpc: '2.0' as const, method: 'notifications/progress', params: { progressToken: 'p', progress: n } });

  async function replay(store: SessionEvents, after: string): Promise<string[]> {
    const sent: string[] = [];
    await store.replayEventsAfter(after, { send: async (id) => void sent.push(id) });
    return sent;
  }

  it('keeps at most perStream events per stream and refuses a resume from before them', async () => {
    const store = new SessionEvents({ perStream: 3, streams: 10, bytes: 1e6, ttlMs: 60_000 });
    const ids: string[] = [];
    for (let n = 0; n < 6; n++) ids.push(await store.storeEvent('s1', message(n)));
    expect(store.size()).toMatchObject({ streams: 1, events: 3 });
    expect(await replay(store, ids[3] as string)).toEqual([ids[4], ids[5]]);
    expect(await replay(store, ids[2] as string)).toEqual([ids[3], ids[4], ids[5]]);
    expect(store.problem(ids[1] as string)).toMatch(/were dropped/);
    await expect(replay(store, ids[1] as string)).rejects.toThrow(/were dropped/);
  });

  it('drops streams idle longer than the TTL, and the oldest streams beyond the stream and byte caps', async () => {
    let now = 0;
    const store = new SessionEvents({ perStream: 100, streams: 2, bytes: 1e6, ttlMs: 1000 }, () => now);
    const a = await store.storeEvent('a', message(1));
    await store.storeEvent('b', message(1));
    await store.storeEvent('c', message(1));
    expect(store.size().streams).toBe(2);
    await expect(replay(store, a)).rejects.toThrow(/unknown or expired/);
    now = 5000;
    const d = await store.storeEvent('d', message(1));
    expect(store.size()).toMatchObject({ streams: 1, events: 1 });
    expect(store.problem(d)).toBeUndefined();
    expect(await replay(store, d)).toEqual([]);

    const small = new SessionEvents({ perStream: 100, streams: 100, bytes: 300, ttlMs: 60_000 });
    for (let n = 0; n < 10; n++) await small.storeEvent(`s${n}`, message(n));
    expect(small.size().bytes).toBeLessThanOrEqual(300);
    expect(small.size().streams).toBeLessThan(10);
  });
});
