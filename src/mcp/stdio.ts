import { createMcpServer } from './server.js';
import { StdioLineTransport } from './stdio-transport.js';
import type { AppSource } from './tool.js';

/**
 * Serves MCP on stdin/stdout until the client goes away (stdin EOF) or `stop`
 * resolves (the command's SIGTERM/SIGINT). stdout belongs to the protocol; logs go
 * to stderr. Executors are separate processes and keep running after this returns.
 * The transport connects at once; the app loads when a request first needs it
 * (`source`). Input that is not a message is answered with a JSON-RPC error and
 * the server reads on (src/mcp/stdio-transport.ts).
 */
export async function serveStdio(source: AppSource, stop: Promise<unknown>): Promise<void> {
  const server = createMcpServer(source);
  const transport = new StdioLineTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
    process.stdin.once('close', () => resolve());
    void stop.then(() => resolve());
  });
  await server.connect(transport);
  process.stderr.write('abp mcp: serving on stdio\n');
  await closed;
  await server.close().catch(() => undefined);
}
