import type { IncomingMessage, ServerResponse } from 'node:http';
import type { App } from '../app.js';
import { HttpError } from './errors.js';

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
  app: App;
  /** Who is calling: "api-key", or "session:…" for a signed-in dashboard. */
  caller: string;
  /** The parsed JSON body (undefined when empty), read once within the size cap. */
  body(): Promise<unknown>;
}

export type Handler = (ctx: RouteContext) => Promise<void>;

interface Route {
  method: string;
  pattern: string;
  parts: string[];
  handler: Handler;
}

/** A few dozen routes need no framework: split the path, match `:name` segments. */
export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method, pattern, parts: pattern.split('/').filter(Boolean), handler });
    return this;
  }

  /** The route for a request; 405 when the path exists under another method, null when it does not exist. */
  match(method: string, path: string): { route: Route; params: Record<string, string> } | null {
    const segments = path.split('/').filter(Boolean);
    const allowed: string[] = [];
    for (const route of this.routes) {
      const params = matchParts(route.parts, segments);
      if (!params) continue;
      if (route.method === method || (method === 'HEAD' && route.method === 'GET')) return { route, params };
      allowed.push(route.method);
    }
    if (allowed.length > 0) {
      throw new HttpError(405, 'method_not_allowed', `${method} is not allowed on ${path}; use ${[...new Set(allowed)].join(' or ')}`, {}, { allow: [...new Set(allowed)].join(', ') });
    }
    return null;
  }
}

function matchParts(parts: string[], segments: string[]): Record<string, string> | null {
  if (parts.length !== segments.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    const segment = segments[i] as string;
    if (part.startsWith(':')) {
      try {
        params[part.slice(1)] = decodeURIComponent(segment);
      } catch {
        return null;
      }
    } else if (part !== segment) return null;
  }
  return params;
}
