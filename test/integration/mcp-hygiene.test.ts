import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, ROOT, Sandbox } from '../helpers/cli.js';

/*
 * What is not one JSON-RPC message gets a JSON-RPC error from `abp mcp`, and the
 * server reads on (issue 22, class 5). Raw bytes on a real process's stdin; on
 * both stores, since the server opens the store as it serves.
 */

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

/**
 * `abp mcp` as a real process, spoken to in raw bytes: every line of stdout is
 * parsed as it comes, and a test awaits the reply it needs by id.
 */
class RawMcp {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly replies: any[] = [];
  stderr = '';
  exit: Promise<number | null>;
  private out = '';
  private waiters: (() => void)[] = [];

  constructor(env: Record<string, string>) {
    this.proc = spawn(process.execPath, [CLI, 'mcp'], { env: { ...process.env, ...env }, cwd: ROOT });
    this.proc.stdout.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk: string) => {
      this.out += chunk;
      let i: number;
      while ((i = this.out.indexOf('\n')) >= 0) {
        const line = this.out.slice(0, i);
        this.out = this.out.slice(i + 1);
        // Every line abp writes must be one JSON value: a stray byte on stdout breaks the protocol.
        this.replies.push(JSON.parse(line));
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exit = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.proc.stdin.write(data, (err) => (err ? reject(err) : resolve())));
  }

  send(message: unknown): Promise<void> {
    return this.write(`${JSON.stringify(message)}\n`);
  }

  /** Waits for the first reply (from index `from`) that satisfies `match`. */
  async reply(match: (r: any) => boolean, from = 0, timeoutMs = 30_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.replies.slice(from).find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no such reply; got ${JSON.stringify(this.replies).slice(0, 2000)}; stderr ${this.stderr.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a ping and returns every reply that came before its answer: what the lines sent earlier got. */
  async before(id: string): Promise<any[]> {
    const from = this.replies.length;
    await this.send({ jsonrpc: '2.0', id, method: 'ping' });
    const pong = await this.reply((r) => r.id === id, from);
    expect(pong).toEqual({ jsonrpc: '2.0', id, result: {} });
    return this.replies.slice(from, this.replies.indexOf(pong));
  }

  alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** stderr and stdout are two pipes: what was logged before a reply may be read after it. */
  async logged(predicate: (stderr: string) => boolean, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.stderr)) {
      if (Date.now() > deadline) throw new Error(`stderr never satisfied the check: ${this.stderr.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.stderr;
  }
}

const INITIALIZE = { jsonrpc: '2.0', id: 'init', method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } };
const errorOf = (id: unknown, code: number) => expect.objectContaining({ jsonrpc: '2.0', id, error: expect.objectContaining({ code, message: expect.any(String) }) });

describe('abp mcp over stdio: what is not one JSON-RPC message gets a JSON-RPC error, and the server reads on', () => {
  let mcp: RawMcp | undefined;
  afterEach(async () => {
    if (mcp?.alive()) {
      mcp.proc.stdin.end();
      await mcp.exit;
    }
    mcp = undefined;
  });

  it('answers malformed JSON, batches, [], {}, non-messages, invalid UTF-8 and blank lines exactly, then serves initialize and tools/list', async () => {
    mcp = new RawMcp(sb.env);
    // Before anything else, and before initialize: the transport answers on its own.
    expect(await mcp.before('p0')).toEqual([]);

    await mcp.write('{"jsonrpc":"2.0","id":1,"method":"tools/list"\n');
    expect(await mcp.before('p1')).toEqual([{ jsonrpc: '2.0', id: null, error: { code: -32700, message: expect.stringMatching(/^Parse error: the line is not JSON/) } }]);

    await mcp.write('not json at all\n{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]\n');
    expect(await mcp.before('p2')).toEqual([errorOf(null, -32700), errorOf(null, -32700)]);

    // A batch: MCP 2025-06-18 removed batching. Each request in it is refused under its own id; the notification and the response get nothing.
    await mcp.send([
      { jsonrpc: '2.0', id: 7, method: 'tools/list' },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { jsonrpc: '2.0', id: 'eight', method: 'ping' },
      { jsonrpc: '2.0', id: 99, result: {} },
    ]);
    const batch = await mcp.before('p3');
    expect(batch).toEqual([errorOf(7, -32600), errorOf('eight', -32600)]);
    expect(batch[0].error.message).toMatch(/batches are not supported \(MCP 2025-06-18 removed batching\)/);
    // Nothing to answer by id: one error, id null.
    for (const line of ['[]', '[1, 2, 3]', '[{"jsonrpc":"2.0","method":"notifications/initialized"}]', '[[]]']) {
      await mcp.write(`${line}\n`);
      expect(await mcp.before(`batch ${line}`), line).toEqual([errorOf(null, -32600)]);
    }

    // Valid JSON that is no JSON-RPC message: -32600, under the request's id when it has one.
    const cases: [string, unknown][] = [
      ['{}', null],
      ['null', null],
      ['42', null],
      ['"tools/list"', null],
      ['true', null],
      ['{"jsonrpc":"2.0","id":9,"method":7}', 9],
      ['{"jsonrpc":"1.0","id":"v1","method":"ping"}', 'v1'],
      ['{"id":10,"method":"ping"}', 10],
      ['{"jsonrpc":"2.0","id":11,"method":"ping","extra":true}', 11],
      ['{"jsonrpc":"2.0","id":1.5,"method":"ping"}', null],
      ['{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', null],
      ['{"jsonrpc":"2.0","id":null,"method":"ping"}', null],
      ['{"jsonrpc":"2.0","method":1,"params":"bar"}', null],
      // A broken response: its id names one of the server's requests, so it is not echoed.
      ['{"jsonrpc":"2.0","id":12,"result":1}', null],
    ];
    for (const [line, id] of cases) {
      await mcp.write(`${line}\n`);
      const got = await mcp.before(`case ${line}`);
      expect(got, line).toEqual([errorOf(id, -32600)]);
      expect(got[0].error.message, line).toMatch(/^Invalid Request: not a JSON-RPC 2\.0 message/);
    }

    // Bytes that are not UTF-8 are a parse error, never silently replaced, even inside a string of an otherwise valid request.
    await mcp.write(Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a]));
    await mcp.write(Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":13,"method":"ping","params":{"_meta":{"x":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}}}\n')]));
    const utf8 = await mcp.before('p4');
    expect(utf8).toEqual([errorOf(null, -32700), errorOf(null, -32700)]);
    expect(utf8[0].error.message).toBe('Parse error: the line is not valid UTF-8');

    // Blank lines, CRLF, several messages in one write and one message over several writes.
    await mcp.write('\n\n   \n\r\n');
    expect(await mcp.before('p5')).toEqual([]);
    const two = `${JSON.stringify({ jsonrpc: '2.0', id: 'a', method: 'ping' })}\r\n${JSON.stringify({ jsonrpc: '2.0', id: 'b', method: 'ping' })}\n`;
    await mcp.write(two);
    await mcp.reply((r) => r.id === 'b');
    const split = `${JSON.stringify({ jsonrpc: '2.0', id: 'c', method: 'ping' })}\n`;
    for (const piece of [split.slice(0, 5), split.slice(5, 20), split.slice(20)]) await mcp.write(piece);
    expect(await mcp.reply((r) => r.id === 'c')).toEqual({ jsonrpc: '2.0', id: 'c', result: {} });
    expect(mcp.replies.find((r) => r.id === 'a')).toEqual({ jsonrpc: '2.0', id: 'a', result: {} });

    // After all that, the protocol works: initialize, tools/list, and an unknown method gets the SDK's -32601.
    await mcp.send(INITIALIZE);
    const init = await mcp.reply((r) => r.id === 'init');
    expect(init.result.serverInfo.name).toBe('abp');
    await mcp.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    await mcp.send({ jsonrpc: '2.0', id: 'list', method: 'tools/list' });
    const list = await mcp.reply((r) => r.id === 'list');
    expect(list.result.tools.map((t: { name: string }) => t.name)).toEqual(expect.arrayContaining(['create_job', 'start_job', 'get_results']));
    await mcp.send({ jsonrpc: '2.0', id: 'nope', method: 'no/such/method' });
    expect(await mcp.reply((r) => r.id === 'nope')).toEqual(errorOf('nope', -32601));
    expect(mcp.alive()).toBe(true);

    // Each refused line is logged to stderr, briefly.
    const said = [
      'abp mcp: refused a line that is not JSON: answered -32700: "{\\"jsonrpc\\":\\"2.0\\",\\"id\\":1,',
      'abp mcp: refused a batch of 4 elements: answered -32600 to id 7: ',
      'abp mcp: refused a line that is not UTF-8: answered -32700: ',
      'abp mcp: refused JSON that is not a JSON-RPC 2.0 message (an object): answered -32600 to id 9: ',
    ];
    await mcp.logged((e) => said.every((text) => e.includes(text)));
    // The end of stdin still ends the server, with exit code 0.
    mcp.proc.stdin.end();
    expect(await mcp.exit).toBe(0);
  });

  it('answers a line over 10 MiB as soon as it passes the limit, under its id, drops the rest unbuffered, and serves on', async () => {
    mcp = new RawMcp(sb.env);
    await mcp.send(INITIALIZE);
    await mcp.reply((r) => r.id === 'init');
    await mcp.send({ jsonrpc: '2.0', method: 'notifications/initialized' });

    // 12 MiB in one request whose id comes first, as every SDK writes it. The reply comes after 11 MiB, before the line ends.
    const head = '{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"list_jobs","arguments":{"pad":"';
    await mcp.write(head);
    const MiB = 'A'.repeat(1024 * 1024);
    for (let i = 0; i < 11; i++) await mcp.write(MiB);
    const big = await mcp.reply((r) => r.id === 'big');
    expect(big).toEqual(errorOf('big', -32600));
    expect(big.error.message).toMatch(/message over 10485760 bytes/);
    expect(big.error.data).toEqual({ max_bytes: 10 * 1024 * 1024 });
    // The rest of the line, and the next message after its newline in the same write.
    await mcp.write(`${MiB}"}}}\n${JSON.stringify({ jsonrpc: '2.0', id: 'after', method: 'tools/list' })}\n`);
    const after = await mcp.reply((r) => r.id === 'after');
    expect(after.result.tools.length).toBeGreaterThan(5);
    expect(mcp.replies.filter((r) => r.id === 'big')).toHaveLength(1);

    // The replies since `from`, up to a ping's answer (an oversized line's error may come before its last byte was written).
    const since = async (from: number, ping: string) => {
      await mcp!.before(ping);
      return mcp!.replies.slice(from, -1);
    };
    // 12 MiB of junk with no id: one error, id null.
    let from = mcp.replies.length;
    for (let i = 0; i < 12; i++) await mcp.write(MiB);
    await mcp.write('\n');
    expect(await since(from, 'p-junk')).toEqual([errorOf(null, -32600)]);

    // An id that comes after the limit cannot be seen: id null, and still one reply.
    from = mcp.replies.length;
    await mcp.write(`{"jsonrpc":"2.0","method":"ping","params":{"pad":"${'B'.repeat(11 * 1024 * 1024)}"},"id":"late"}\n`);
    expect(await since(from, 'p-late')).toEqual([errorOf(null, -32600)]);

    // Exactly at the limit is not over it: a 10 MiB line is read (and, being junk, is a parse error).
    from = mcp.replies.length;
    await mcp.write(`${'C'.repeat(10 * 1024 * 1024)}\n`);
    expect(await since(from, 'p-limit')).toEqual([errorOf(null, -32700)]);

    await mcp.send({ jsonrpc: '2.0', id: 'list', method: 'tools/list' });
    expect((await mcp.reply((r) => r.id === 'list')).result.tools.length).toBeGreaterThan(5);
    expect(mcp.alive()).toBe(true);
    // The log names the line and caps what it shows of it.
    const stderr = await mcp.logged((e) => e.split('dropped the rest of the oversized line').length === 4);
    const logged = stderr.split('\n').filter((l) => l.includes('over 10485760 bytes'));
    expect(logged.length).toBe(3);
    for (const line of logged) expect(line.length).toBeLessThan(600);
  });

  it('a flood of bad lines is answered line by line but logged briefly', async () => {
    mcp = new RawMcp(sb.env);
    await mcp.write('x\n'.repeat(3000));
    const got = await mcp.before('flood');
    expect(got).toHaveLength(3000);
    expect(got.every((r) => r.error.code === -32700 && r.id === null)).toBe(true);
    // The first 50 one by one, then one in a thousand, with the count.
    const stderr = await mcp.logged((e) => e.includes('(3000 refused so far'));
    const logged = stderr.split('\n').filter((l) => l.startsWith('abp mcp: refused'));
    expect(logged.length).toBe(50 + 3);
  });
});
