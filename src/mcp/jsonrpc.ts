import { ErrorCode, JSONRPCMessageSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/**
 * What abp's MCP transports answer to input that is not one JSON-RPC 2.0 message,
 * by the JSON-RPC 2.0 spec: -32700 for what is not JSON, -32600 for JSON that is
 * not a message. `id` is the request's own id when it can be told (an object with
 * a `method` and a string or integer `id`), and null otherwise, as the spec says.
 * A response's id is never echoed: it names one of the server's own requests, and
 * an error under it would read as the answer to one of the client's.
 */
export interface JsonRpcErrorReply {
  jsonrpc: '2.0';
  id: string | number | null;
  error: { code: number; message: string; data?: unknown };
}

export const PARSE_ERROR = ErrorCode.ParseError; // -32700
export const INVALID_REQUEST = ErrorCode.InvalidRequest; // -32600

export function errorReply(id: string | number | null, code: number, message: string, data?: unknown): JsonRpcErrorReply {
  return { jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } };
}

/** A request's id, when `value` is an object meant as a request: it has a `method`, and an id that is a string or an integer. */
export function requestId(value: unknown): string | number | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  if (!('method' in v)) return null;
  const id = v.id;
  return typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)) ? id : null;
}

export const BATCH_REFUSED =
  'Invalid Request: JSON-RPC batches are not supported (MCP 2025-06-18 removed batching); send each message on its own';

/** One JSON value, checked: the message, or why it is none and the error replies to send. */
export type Checked = { ok: true; message: JSONRPCMessage } | { ok: false; reason: string; replies: JsonRpcErrorReply[] };

/**
 * Checks a parsed JSON value as one MCP message. A batch (an array) is refused: one
 * -32600 per element that is a request with an id, so that each of the client's
 * pending requests fails at once instead of waiting; one with id null when no
 * element is a request (`[]`, notifications only, junk), so that the sender still
 * hears why nothing happened. The replies are separate messages, never an array:
 * a client of MCP 2025-06-18 or later cannot read a batch response either.
 */
export function checkMessage(value: unknown): Checked {
  if (Array.isArray(value)) {
    const ids = value.map(requestId).filter((id): id is string | number => id !== null);
    const replies = ids.length > 0 ? ids.map((id) => errorReply(id, INVALID_REQUEST, BATCH_REFUSED)) : [errorReply(null, INVALID_REQUEST, BATCH_REFUSED)];
    const reason = value.length === 0 ? 'an empty batch' : `a batch of ${value.length} ${value.length === 1 ? 'element' : 'elements'}`;
    return { ok: false, reason, replies };
  }
  const parsed = JSONRPCMessageSchema.safeParse(value);
  if (parsed.success) return { ok: true, message: parsed.data };
  const what = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
  const message = `Invalid Request: not a JSON-RPC 2.0 message (${what} that is not a request, notification or response; every message needs "jsonrpc": "2.0" and has nothing beyond the spec's members)`;
  return { ok: false, reason: `JSON that is not a JSON-RPC 2.0 message (${what})`, replies: [errorReply(requestId(value), INVALID_REQUEST, message)] };
}

/**
 * The top-level `id` and `method` of a JSON object from the start of its text
 * (`prefix` may be cut anywhere), without parsing the rest: how an oversized
 * message can still be answered under its own id: null where the prefix does not
 * show both (not an object, cut before them, malformed), as for `requestId`.
 */
export function leadingRequestId(prefix: string): string | number | null {
  let i = 0;
  const n = prefix.length;
  const ws = () => {
    while (i < n && (prefix[i] === ' ' || prefix[i] === '\t' || prefix[i] === '\n' || prefix[i] === '\r')) i++;
  };
  /** A JSON string starting at i (which is a quote): its source text, or undefined if cut. */
  const string = (): string | undefined => {
    const start = i;
    i++;
    while (i < n) {
      const c = prefix[i];
      if (c === '\\') i += 2;
      else if (c === '"') {
        i++;
        return prefix.slice(start, i);
      } else i++;
    }
    return undefined;
  };
  /** Skips one value; returns its source text, or undefined if cut or malformed. */
  const value = (): string | undefined => {
    const start = i;
    const c = prefix[i];
    if (c === '"') return string();
    if (c === '{' || c === '[') {
      let depth = 0;
      while (i < n) {
        const d = prefix[i];
        if (d === '"') {
          if (string() === undefined) return undefined;
          continue;
        }
        if (d === '{' || d === '[') depth++;
        else if (d === '}' || d === ']') {
          depth--;
          if (depth === 0) {
            i++;
            return prefix.slice(start, i);
          }
        }
        i++;
      }
      return undefined;
    }
    while (i < n && !/[\s,}\]]/.test(prefix[i] as string)) i++;
    return i < n && i > start ? prefix.slice(start, i) : undefined;
  };
  ws();
  if (prefix[i] !== '{') return null;
  i++;
  let id: unknown;
  let method = false;
  for (;;) {
    ws();
    if (prefix[i] !== '"') return null;
    const key = string();
    if (key === undefined) return null;
    ws();
    if (prefix[i] !== ':') return null;
    i++;
    ws();
    const text = value();
    if (text === undefined) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(key);
    } catch {
      return null;
    }
    if (parsed === 'id') {
      try {
        id = JSON.parse(text);
      } catch {
        return null;
      }
    } else if (parsed === 'method') method = true;
    if (method && id !== undefined) return requestId({ method: true, id });
    ws();
    if (prefix[i] !== ',') return null;
    i++;
  }
}
