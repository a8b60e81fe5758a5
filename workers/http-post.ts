import http from 'node:http';
import https from 'node:https';

/**
 * One JSON POST over node:http(s) with keep-alive connections. The http-llm
 * worker sends hundreds of requests at once; fetch (undici) cost about two to
 * three times the CPU per request that node:http does, and with every request in
 * flight at once that CPU, not the API, set the pace.
 */
const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: Infinity }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: Infinity }),
};

export interface PostResponse {
  status: number;
  ok: boolean;
  /** Header lookup by name, case-insensitive (node:http lower-cases them). */
  headers: Pick<Headers, 'get'>;
  text: string;
}

/** Parsed URLs by their text: every unit of a job posts to the same one. */
const targets = new Map<string, URL>();

function target(url: string): URL {
  let parsed = targets.get(url);
  if (!parsed) {
    parsed = new URL(url);
    if (targets.size >= 100) targets.clear();
    targets.set(url, parsed);
  }
  return parsed;
}

/** Rejects with an Error whose `cause` is the network error, or with the signal's reason on abort. */
export function postJson(url: string, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<PostResponse> {
  return new Promise<PostResponse>((resolve, reject) => {
    const to = target(url);
    const agent = to.protocol === 'https:' ? agents['https:'] : agents['http:'];
    const send = to.protocol === 'https:' ? https.request : http.request;
    const req = send(to, { method: 'POST', agent, signal, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (err) => reject(new Error(`reading the response failed: ${err.message}`, { cause: err })));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const raw = res.headers;
        const get = (name: string): string | null => {
          const value = raw[name.toLowerCase()];
          return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
        };
        resolve({ status, ok: status >= 200 && status < 300, headers: { get }, text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.on('error', (err) => reject(signal.aborted ? signal.reason : new Error(`request failed: ${err.message}`, { cause: err })));
    req.end(body);
  });
}
