import type { ServerResponse } from 'node:http';
import { AbpError, errorMessage, type ErrorCode } from '../domain/errors.js';
import type { NextStep } from '../domain/next-step.js';
import { httpHint } from './hints.js';

/** HTTP-only failures (auth, limits, routing) that have no AbpError code. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** One table from AbpError codes to statuses, so every front end's errors mean the same here. */
const STATUS: Record<ErrorCode, number> = {
  invalid_input: 400,
  not_found: 404,
  illegal_transition: 409,
  conflict: 409,
  enumeration_failed: 422,
  store_error: 503,
  internal: 500,
};

export function sendJson(res: ServerResponse, status: number, data: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(data);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store', ...headers });
  res.end(body);
}

/** The one error envelope: `{error: {code, message, details}}`. */
export function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (err instanceof HttpError) {
    sendJson(res, err.status, { error: { code: err.code, message: err.message, details: err.details } }, err.headers);
  } else if (err instanceof AbpError) {
    const next = err.details?.next as NextStep | undefined;
    sendJson(res, STATUS[err.code] ?? 500, { error: { code: err.code, message: err.message, details: err.details ?? {}, ...(next ? { next: httpHint(next) } : {}) } });
  } else {
    sendJson(res, 500, { error: { code: 'internal', message: `internal error: ${errorMessage(err)}`, details: {} } });
  }
}
