import type { Readable, Writable } from 'node:stream';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { logLine } from '../util/log-line.js';
import { checkMessage, errorReply, INVALID_REQUEST, leadingRequestId, PARSE_ERROR, type JsonRpcErrorReply } from './jsonrpc.js';

/** The longest message read, in bytes without its newline: the SDK's own stdio limit (10 MiB). */
export const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;
/** How much of an oversized line is kept, to find its id. */
const ID_PREFIX_BYTES = 64 * 1024;
/** How much of a refused line the log shows. */
const LOG_EXCERPT_CHARS = 200;
/** Refused lines logged one by one; after these, one in every LOG_EVERY. */
const LOG_FIRST = 50;
const LOG_EVERY = 1000;

export interface StdioTransportOptions {
  maxMessageBytes?: number;
  /** Where refused input is reported (one line each); stderr by default. */
  log?: (line: string) => void;
}

/**
 * MCP over stdio, one JSON-RPC message per line, in place of the SDK's
 * StdioServerTransport, which drops what it cannot parse without a word (the
 * client then waits forever) and closes the connection when a message outgrows
 * its 10 MiB buffer. Here every line gets an answer by the JSON-RPC 2.0 spec and
 * the server keeps serving:
 *
 * - not UTF-8, or not JSON: -32700, id null;
 * - a batch (an array): -32600 per request in it, or once with id null (jsonrpc.ts);
 * - JSON that is no JSON-RPC message: -32600, with the id when it is a request's;
 * - a line over `maxMessageBytes`: -32600 as soon as it passes the limit, under its
 *   id when the start of the line shows it; the rest, up to the next newline, is
 *   read and dropped, never buffered.
 *
 * Blank lines are skipped. The rest is the SDK's: messages are serialised as one
 * line of JSON each, a send resolves once stdout took it (waiting for 'drain' when
 * it pushes back), and the end of stdin closes the transport (onclose).
 */
export class StdioLineTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private readonly max: number;
  private readonly log: (line: string) => void;
  private started = false;
  private closed = false;
  /** The line being read: its pieces and their size. */
  private parts: Buffer[] = [];
  private size = 0;
  /** Bytes dropped of the oversized line being skipped, or -1 when not skipping. */
  private skipped = -1;
  private refused = 0;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(
    private readonly stdin: Readable = process.stdin,
    private readonly stdout: Writable = process.stdout,
    options: StdioTransportOptions = {},
  ) {
    this.max = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.log = options.log ?? logLine;
  }

  private readonly onData = (chunk: Buffer | string) => {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    try {
      let start = 0;
      for (;;) {
        const nl = buf.indexOf(10, start);
        if (nl === -1) {
          this.take(buf.subarray(start));
          return;
        }
        this.take(buf.subarray(start, nl));
        this.endLine();
        start = nl + 1;
        if (this.closed) return;
      }
    } catch (err) {
      // A bug here must not end the server: report it, drop the line, read on.
      this.parts = [];
      this.size = 0;
      this.onerror?.(err instanceof Error ? err : new Error(String(err)));
    }
  };

  private readonly onError = (error: Error) => this.onerror?.(error);
  private readonly onEnd = () => void this.close();

  async start(): Promise<void> {
    if (this.started) throw new Error('StdioLineTransport already started');
    this.started = true;
    this.stdin.on('data', this.onData);
    this.stdin.on('error', this.onError);
    this.stdin.once('end', this.onEnd);
    this.stdin.once('close', this.onEnd);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stdin.off('data', this.onData);
    this.stdin.off('error', this.onError);
    this.stdin.off('end', this.onEnd);
    this.stdin.off('close', this.onEnd);
    // Other readers of stdin, if any, keep it flowing.
    if (this.stdin.listenerCount('data') === 0) this.stdin.pause();
    this.parts = [];
    this.size = 0;
    this.onclose?.();
  }

  send(message: JSONRPCMessage | JsonRpcErrorReply): Promise<void> {
    return new Promise((resolve) => {
      if (this.stdout.write(`${JSON.stringify(message)}\n`)) resolve();
      else this.stdout.once('drain', resolve);
    });
  }

  /** Adds a piece of the current line, or drops it when the line is over the limit. */
  private take(piece: Buffer): void {
    if (piece.length === 0) return;
    if (this.skipped >= 0) {
      this.skipped += piece.length;
      return;
    }
    if (this.size + piece.length <= this.max) {
      this.parts.push(piece);
      this.size += piece.length;
      return;
    }
    // Over the limit: answer now (the client need not finish sending it), keep nothing but the count.
    const head = Buffer.concat([...this.parts, piece.subarray(0, Math.max(0, ID_PREFIX_BYTES - this.size))]).subarray(0, ID_PREFIX_BYTES);
    const id = leadingRequestId(head.toString('utf8'));
    this.skipped = this.size + piece.length;
    this.parts = [];
    this.size = 0;
    this.refuse(
      errorReply(id, INVALID_REQUEST, `Invalid Request: message over ${this.max} bytes; abp mcp reads messages of up to ${this.max} bytes, and drops the rest of this line`, {
        max_bytes: this.max,
      }),
      `a line over ${this.max} bytes`,
      head,
    );
  }

  private endLine(): void {
    if (this.skipped >= 0) {
      this.note(`dropped the rest of the oversized line (${this.skipped} bytes in all)`);
      this.skipped = -1;
      return;
    }
    let line = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts);
    this.parts = [];
    this.size = 0;
    if (line.length > 0 && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1); // CRLF
    let text: string;
    try {
      text = this.decoder.decode(line);
    } catch {
      this.refuse(errorReply(null, PARSE_ERROR, 'Parse error: the line is not valid UTF-8'), 'a line that is not UTF-8', line);
      return;
    }
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      this.refuse(errorReply(null, PARSE_ERROR, `Parse error: the line is not JSON (${(err as Error).message})`), 'a line that is not JSON', line);
      return;
    }
    const checked = checkMessage(value);
    if (!checked.ok) {
      for (const reply of checked.replies) this.refuse(reply, checked.reason, line, reply !== checked.replies[0]);
      return;
    }
    this.onmessage?.(checked.message);
  }

  /** Answers a refused line and logs it (briefly, and less often once there were many). */
  private refuse(reply: JsonRpcErrorReply, reason: string, line: Buffer, quiet = false): void {
    void this.send(reply);
    if (quiet) return;
    this.refused++;
    if (this.refused > LOG_FIRST && this.refused % LOG_EVERY !== 0) return;
    const excerpt = line.subarray(0, LOG_EXCERPT_CHARS * 4).toString('utf8').slice(0, LOG_EXCERPT_CHARS);
    const more = line.length > Buffer.byteLength(excerpt) ? '…' : '';
    const count = this.refused > LOG_FIRST ? ` (${this.refused} refused so far; one in ${LOG_EVERY} is logged)` : '';
    this.note(`refused ${reason}: answered ${reply.error.code}${reply.id === null ? '' : ` to id ${JSON.stringify(reply.id)}`}${count}: ${JSON.stringify(excerpt)}${more}`);
  }

  private note(text: string): void {
    try {
      this.log(`abp mcp: ${text}`);
    } catch {
      // A log that cannot be written never stops the server.
    }
  }
}
