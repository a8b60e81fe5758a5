import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { App } from '../app.js';
import { createMcpServer } from '../mcp/server.js';

/** MCP over Streamable HTTP at /mcp: one server and transport per session. */
export class McpEndpoint {
  private readonly sessions = new Map<string, StreamableHTTPServerTransport>();

  constructor(private readonly app: App) {}

  async handle(req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    const sessionId = req.headers['mcp-session-id'] as string | undefined;
    let transport = sessionId ? this.sessions.get(sessionId) : undefined;
    if (!transport) {
      if (sessionId || req.method !== 'POST' || !isInitializeRequest(body)) {
        res.writeHead(sessionId ? 404 : 400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: sessionId ? 'unknown session; initialize again' : 'no session: send an initialize request first' }, id: null }));
        return;
      }
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => void this.sessions.set(id, created),
      });
      created.onclose = () => {
        if (created.sessionId) this.sessions.delete(created.sessionId);
      };
      await createMcpServer(this.app).connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res, body);
  }

  async close(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((t) => t.close().catch(() => undefined)));
    this.sessions.clear();
  }
}
