import { readdirSync, readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ROOT, Sandbox } from '../helpers/cli.js';
import { KEY, startServe, type Served } from '../helpers/serve.js';

/*
 * The MCP conformance suite (@modelcontextprotocol/conformance, a dev dependency)
 * run as a real subprocess against `abp serve`'s Streamable HTTP endpoint. The
 * suite tests servers by URL only (stdio servers cannot be tested by it), and it
 * has no way to send a header, while abp answers nobody without its API key. So
 * the suite talks to a loopback forwarder that adds the key to each request and
 * passes everything else through untouched, Host and Origin included: abp still
 * checks them itself, with the forwarder's address in ABP_ALLOWED_HOSTS as for
 * any reverse proxy. A run straight at abp, without the key, shows that the key
 * is still required.
 */

const PACKAGE = join(ROOT, 'node_modules', '@modelcontextprotocol', 'conformance');
const BIN = join(PACKAGE, JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8')).bin.conformance as string);
/** The generic server scenarios: they need no test tools, resources or prompts of the suite's own on the server. */
const SCENARIOS = ['server-initialize', 'ping', 'tools-list', 'logging-set-level', 'resources-list', 'prompts-list', 'dns-rebinding-protection'];

/*
 * The suite's bundle imports fs.globSync (Node 22) at load, for a command this
 * test does not run. On older Node the import is given a globSync that throws,
 * through a module hook that applies to the suite's own file alone.
 */
const SHIM =
  Number(process.versions.node.split('.')[0]) >= 22
    ? []
    : [
        '--import',
        'data:text/javascript,' +
          encodeURIComponent(`import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(`
const shim = 'data:text/javascript,' + encodeURIComponent("export * from 'node:fs'; export { default } from 'node:fs'; export function globSync() { throw new Error('fs.globSync needs Node 22'); }");
export async function resolve(specifier, context, next) {
  if ((specifier === 'fs' || specifier === 'node:fs') && context.parentURL === ${JSON.stringify(pathToFileURL(BIN).href)}) return { url: shim, shortCircuit: true };
  return next(specifier, context);
}`)}));`),
      ];

interface Check {
  id: string;
  status: string;
  errorMessage?: string;
  details?: Record<string, unknown>;
}

interface Run {
  exitCode: number;
  stdout: string;
  checks: Check[];
}

/** One scenario, as its own process, with its checks read from the results it saves. */
async function conformance(url: string, scenario: string, outDir: string): Promise<Run> {
  const r = await execa(process.execPath, [...SHIM, BIN, 'server', '--url', url, '--scenario', scenario, '--output-dir', outDir], { reject: false, timeout: 180_000, cwd: ROOT });
  const runs = readdirSync(outDir).filter((d) => d.startsWith(`server-${scenario}-`));
  expect(runs, `${scenario}: one results folder\n${r.stdout}\n${r.stderr}`).toHaveLength(1);
  const checks = JSON.parse(readFileSync(join(outDir, runs[0] as string, 'checks.json'), 'utf8')) as Check[];
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), checks };
}

/** A loopback forwarder that adds abp's API key to every request and changes nothing else. */
async function keyForwarder(target: () => URL): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const to = target();
    const upstream = request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: { ...req.headers, authorization: `Bearer ${KEY}` } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', (err) => res.destroy(err));
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

let sb: Sandbox;
let served: Served | undefined;
let forwarder: Server | undefined;

beforeEach(() => {
  sb = new Sandbox();
});
afterEach(async () => {
  await served?.stop();
  await new Promise((resolve) => (forwarder ? forwarder.close(resolve) : resolve(undefined)));
  await sb.cleanup();
});

describe('the MCP conformance suite against abp serve /mcp', () => {
  it('passes the generic server scenarios, and still refuses a client without the key', { timeout: 300_000 }, async () => {
    const { server, port } = await keyForwarder(() => new URL((served as Served).url));
    forwarder = server;
    served = await startServe(sb, { ABP_ALLOWED_HOSTS: `localhost:${port},127.0.0.1:${port}` });
    const viaKey = `http://localhost:${port}/mcp`;

    const [direct, ...runs] = await Promise.all([
      conformance(`${served.url}/mcp`, 'dns-rebinding-protection', sb.path('direct')),
      ...SCENARIOS.map((scenario) => conformance(viaKey, scenario, sb.path('results', scenario))),
    ]);

    for (const [i, run] of runs.entries()) {
      const scenario = SCENARIOS[i] as string;
      expect(run.checks.length, `${scenario} ran checks`).toBeGreaterThan(0);
      for (const check of run.checks) expect(check.status, `${scenario} / ${check.id}: ${check.errorMessage ?? ''}`).toBe('SUCCESS');
      expect(run.stdout).toContain(`Passed: ${run.checks.length}/${run.checks.length}, 0 failed`);
      expect(run.exitCode, `${scenario}\n${run.stdout}`).toBe(0);
    }
    const byId = (run: Run) => Object.fromEntries(run.checks.map((c) => [c.id, c]));
    const rebinding = byId(runs[SCENARIOS.indexOf('dns-rebinding-protection')] as Run);
    expect(rebinding['localhost-host-rebinding-rejected']?.details).toMatchObject({ hostHeader: 'evil.example.com', statusCode: 403 });
    expect(rebinding['localhost-host-valid-accepted']?.details).toMatchObject({ statusCode: 200 });

    // Straight at abp, without the key: the rebound Host is refused before anything else, and a
    // good Host without the key gets 401. The suite expects key-less servers, so that check fails.
    const straight = byId(direct);
    expect(straight['localhost-host-rebinding-rejected']).toMatchObject({ status: 'SUCCESS', details: { statusCode: 403 } });
    expect(straight['localhost-host-valid-accepted']).toMatchObject({ status: 'FAILURE', details: { statusCode: 401 } });
    expect(direct.exitCode).not.toBe(0);
  });
});
