import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkMessage, leadingRequestId } from '../../src/mcp/jsonrpc.js';
import { StdioLineTransport } from '../../src/mcp/stdio-transport.js';

/** A transport over in-memory pipes: what it passed on, what it answered, what it logged. */
function harness(maxMessageBytes?: number) {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const messages: unknown[] = [];
  const logs: string[] = [];
  let out = '';
  stdout.setEncoding('utf8');
  stdout.on('data', (c: string) => (out += c));
  const t = new StdioLineTransport(stdin, stdout, { maxMessageBytes, log: (l) => logs.push(l) });
  t.onmessage = (m) => messages.push(m);
  let closed = 0;
  t.onclose = () => closed++;
  return {
    t,
    stdin,
    messages,
    logs,
    replies: () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l)),
    closed: () => closed,
    /** Lets the pipes deliver what was written. */
    flush: () => new Promise((r) => setImmediate(r)),
  };
}

describe('StdioLineTransport', () => {
  it('gives the same messages and replies however the bytes are cut into chunks', async () => {
    const input = Buffer.concat([
      Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping"}\n'),
      Buffer.from('garbage\r\n'),
      Buffer.from('[{"jsonrpc":"2.0","id":"é","method":"ping"}]\n'),
      Buffer.from('{"jsonrpc":"2.0","method":"notifications/initialized"}\r\n'),
      Buffer.from([0xe2, 0x82, 0x0a]), // a cut UTF-8 sequence
      Buffer.from('"snowman ☃"\n\n'),
      Buffer.from(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"pad":"${'x'.repeat(300)}"}}\n`),
      Buffer.from('{"jsonrpc":"2.0","id":3,"method":"ping"}\n'),
    ]);
    const run = async (cuts: number[]) => {
      const h = harness(200);
      await h.t.start();
      let at = 0;
      for (const cut of [...cuts].sort((a, b) => a - b)) {
        h.stdin.write(input.subarray(at, cut));
        at = cut;
      }
      h.stdin.write(input.subarray(at));
      await h.flush();
      return { messages: h.messages, replies: h.replies() };
    };
    const whole = await run([]);
    expect(whole.messages).toEqual([
      { jsonrpc: '2.0', id: 1, method: 'ping' },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { jsonrpc: '2.0', id: 3, method: 'ping' },
    ]);
    expect(whole.replies.map((r) => [r.id, r.error.code])).toEqual([
      [null, -32700],
      ['é', -32600],
      [null, -32700],
      [null, -32600],
      [2, -32600],
    ]);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: input.length }), { maxLength: 30 }), async (cuts) => {
        expect(await run(cuts)).toEqual(whole);
      }),
      { numRuns: 150 },
    );
  });

  it('never holds more than the limit of an oversized line, and answers it once', async () => {
    const h = harness(1024);
    await h.t.start();
    h.stdin.write('{"jsonrpc":"2.0","id":"big","method":"x","params":"');
    for (let i = 0; i < 200; i++) h.stdin.write('y'.repeat(1000));
    await h.flush();
    expect(h.replies()).toEqual([{ jsonrpc: '2.0', id: 'big', error: { code: -32600, message: expect.stringContaining('message over 1024 bytes'), data: { max_bytes: 1024 } } }]);
    expect((h.t as any).parts).toEqual([]);
    expect((h.t as any).size).toBe(0);
    h.stdin.write('"}\n{"jsonrpc":"2.0","id":1,"method":"ping"}\n');
    await h.flush();
    expect(h.replies()).toHaveLength(1);
    expect(h.messages).toEqual([{ jsonrpc: '2.0', id: 1, method: 'ping' }]);
    expect(h.logs.some((l) => l.includes('200'))).toBe(true);
  });

  it('closes once on the end of stdin, and reads nothing after', async () => {
    const h = harness();
    await h.t.start();
    h.stdin.end('{"jsonrpc":"2.0","id":1,"method":"ping"}\n');
    await h.flush();
    await h.flush();
    expect(h.messages).toHaveLength(1);
    expect(h.closed()).toBe(1);
    await h.t.close();
    expect(h.closed()).toBe(1);
  });

  it('waits for stdout to drain before a send resolves', async () => {
    const stdin = new PassThrough();
    const stdout = new PassThrough({ highWaterMark: 16 });
    const t = new StdioLineTransport(stdin, stdout);
    let done = false;
    const sent = t.send({ jsonrpc: '2.0', id: 1, result: { big: 'z'.repeat(100) } }).then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    stdout.resume();
    await sent;
    expect(done).toBe(true);
  });
});

describe('leadingRequestId: a request id from the start of a message cut anywhere', () => {
  it('finds the top-level id and method, never a nested one', () => {
    expect(leadingRequestId('{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"argu')).toBe(5);
    expect(leadingRequestId('{ "method" : "x" , "id" : "a\\"b" , "params": [')).toBe('a"b');
    expect(leadingRequestId('{"params":{"id":1,"method":"y","s":"}{]["},"i\\u0064":2,"method":"z"')).toBe(2);
    expect(leadingRequestId('{"params":{"id":1,"method":"y"},"pad":"')).toBeNull();
    expect(leadingRequestId('{"id":5,"params":"')).toBeNull(); // no method yet: maybe a response
    expect(leadingRequestId('{"id":5,"result":{},"method":"x"')).toBe(5);
    expect(leadingRequestId('{"id":12')).toBeNull(); // the number may go on
    expect(leadingRequestId('{"id":1.5,"method":"x"')).toBeNull();
    expect(leadingRequestId('{"id":null,"method":"x"')).toBeNull();
    expect(leadingRequestId('[{"id":1,"method":"x"}')).toBeNull();
    expect(leadingRequestId('')).toBeNull();
    expect(leadingRequestId('{"id":1 "method":"x"')).toBeNull();
  });

  it('agrees with JSON.parse on every prefix of a serialised request', () => {
    const id = fc.oneof(fc.string(), fc.integer());
    fc.assert(
      fc.property(id, fc.string(), fc.jsonValue(), fc.nat(), (rid, method, params, cut) => {
        const text = JSON.stringify({ jsonrpc: '2.0', id: rid, method, params });
        const prefix = text.slice(0, cut % (text.length + 1));
        const got = leadingRequestId(prefix);
        const idEnd = text.indexOf(',"method"') + 1; // id's value is complete once the next key starts
        const methodEnd = text.indexOf(',"params"') + 1;
        if (prefix.length >= methodEnd) expect(got).toEqual(rid);
        else if (prefix.length < idEnd) expect(got).toBeNull();
      }),
      { numRuns: 500 },
    );
  });
});

describe('checkMessage', () => {
  it('refuses a batch per request in it, or once with id null', () => {
    const r = checkMessage([{ jsonrpc: '2.0', id: 1, method: 'a' }, { jsonrpc: '2.0', method: 'n' }, 5, { id: 'x', method: 'b' }, { id: 2, result: {} }]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.replies.map((x) => x.id)).toEqual([1, 'x']);
    for (const batch of [[], [1], [{ jsonrpc: '2.0', method: 'n' }]]) {
      const c = checkMessage(batch);
      expect(!c.ok && c.replies.map((x) => [x.id, x.error.code])).toEqual([[null, -32600]]);
    }
  });
});
