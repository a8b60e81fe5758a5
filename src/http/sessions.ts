import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const SESSION_COOKIE = 'abp_session';
const SESSION_MS = 12 * 3600 * 1000;

export function cookies(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

/**
 * Dashboard sessions, in this server's memory: a one-time link (whose token lives
 * in the database) is exchanged for a random session id in an HttpOnly,
 * SameSite=Strict cookie. A restart ends every session; `abp dashboard` prints a
 * fresh link.
 */
export class SessionStore {
  private readonly sessions = new Map<string, number>();

  create(): { id: string; cookie: string } {
    const id = randomBytes(32).toString('base64url');
    this.sessions.set(id, Date.now() + SESSION_MS);
    return { id, cookie: `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MS / 1000}` };
  }

  /** The session id a request carries, if it is a live session. */
  from(req: IncomingMessage): string | undefined {
    const id = cookies(req)[SESSION_COOKIE];
    if (!id) return undefined;
    const expires = this.sessions.get(id);
    if (expires === undefined) return undefined;
    if (expires < Date.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return id;
  }
}
