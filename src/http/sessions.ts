import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** The session cookie's name without the port: each server's is `abp_session_<port>`. */
export const SESSION_COOKIE_PREFIX = 'abp_session';
/** The header the dashboard's page sends its session key in. */
export const SESSION_KEY_HEADER = 'x-abp-session-key';
/** The query parameter that carries it where a header cannot (EventSource). */
export const SESSION_KEY_PARAM = 'session_key';
const SESSION_MS = 12 * 3600 * 1000;

export function cookies(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

interface Session {
  expires: number;
  /** The Host (host:port) the session was issued through. */
  host: string;
  /** sha256 of the page key. */
  key: Buffer;
}

/** What a request's session lets it do: load the dashboard's page, or call the API as well. */
export type SessionAccess = { id: string; api: boolean };

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * Dashboard sessions, in this server's memory: a one-time link (whose token lives
 * in the database, bound to this server's address) is exchanged for a session of
 * two halves:
 *
 * - a cookie, `abp_session_<port>` (HttpOnly, SameSite=Strict), which loads the
 *   dashboard's page and files. Browsers send cookies to every port of a host, so
 *   each server has its own name (two servers' cookies never clobber each other),
 *   and a session is refused through any Host but the one it was issued through.
 * - a page key, given to the page alone, in the fragment of the login redirect
 *   (which no server sees), kept in the page's localStorage (which is per origin,
 *   port included) and sent with each API call (x-abp-session-key, or ?session_key=
 *   where a header cannot go). Another program on another port of the same host
 *   receives the cookie with every request the browser makes to it, but never the
 *   key: the cookie alone opens no API.
 *
 * A restart ends every session; `abp dashboard` prints a fresh link.
 */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  private port: number | undefined;

  /** Set once the server listens: the port names the cookie. */
  bind(port: number): void {
    this.port = port;
  }

  get cookieName(): string {
    if (this.port === undefined) throw new Error('SessionStore: bind(port) first');
    return `${SESSION_COOKIE_PREFIX}_${this.port}`;
  }

  /** A new session for a login through `host`: the cookie to set, and the page key for the page. */
  create(host: string): { id: string; key: string; cookie: string } {
    const now = Date.now();
    for (const [id, s] of this.sessions) if (s.expires < now) this.sessions.delete(id);
    const id = randomBytes(32).toString('base64url');
    const key = randomBytes(32).toString('base64url');
    this.sessions.set(id, { expires: now + SESSION_MS, host: host.toLowerCase(), key: digest(key) });
    return { id, key, cookie: `${this.cookieName}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MS / 1000}` };
  }

  /**
   * The live session a request carries, if any, through the Host it was issued
   * through; `api` says whether it also shows the page key (the header, or
   * `keyParam` where the caller accepts one).
   */
  from(req: IncomingMessage, keyParam?: string | null): SessionAccess | undefined {
    const id = cookies(req)[this.cookieName];
    if (!id) return undefined;
    const session = this.sessions.get(id);
    if (session === undefined) return undefined;
    if (session.expires < Date.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    if ((req.headers.host ?? '').toLowerCase() !== session.host) return undefined;
    const header = req.headers[SESSION_KEY_HEADER];
    const key = typeof header === 'string' ? header : (keyParam ?? undefined);
    return { id, api: key !== undefined && timingSafeEqual(digest(key), session.key) };
  }
}
