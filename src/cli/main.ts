#!/usr/bin/env node
import { parseArgs } from 'node:util';
import type { App } from '../app.js';
import { resolveConfig } from '../config.js';
import { AbpError, errorMessage } from '../domain/errors.js';
import type { Command, CommandContext } from './command.js';
import { usage } from './command.js';
import { steadyYoungGeneration } from './v8-tuning.js';

/**
 * Every command, in --help order. A command's module (and what it imports) loads
 * only when that command runs, so `abp status` never pays for the MCP SDK or the
 * HTTP server.
 */
const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  create: { summary: 'Create a job from a spec file and/or flags; prints the job.', load: async () => (await import('./commands/create.js')).create },
  preview: { summary: 'Show what a job spec would enumerate — the count, the first items, the first prompt — creating nothing.', load: async () => (await import('./commands/preview.js')).preview },
  approve: { summary: 'Approve the code of a job pending approval, by its sha256; the code then runs and the units are created.', load: async () => (await import('./commands/approve.js')).approve },
  enumerators: { summary: 'List the enumerator types, with each one’s config fields (--json: JSON Schemas).', load: async () => (await import('./commands/enumerators.js')).enumeratorsCommand },
  start: { summary: 'Run the test unit, approve or reject it, or skip the test and run every unit.', load: async () => (await import('./commands/start.js')).start },
  status: { summary: 'Show a job’s state, counts, cost, rate and ETA.', load: async () => (await import('./commands/status.js')).status },
  watch: { summary: 'Follow a job until it settles: a live progress bar on a terminal, plain lines otherwise.', load: async () => (await import('./commands/watch.js')).watch },
  list: { summary: 'List jobs, newest first.', load: async () => (await import('./commands/list.js')).list },
  units: { summary: 'List a job’s units with their state, attempts and errors.', load: async () => (await import('./commands/units.js')).units },
  unit: { summary: 'Show one unit: payload, rendered prompt, output, error, conversation.', load: async () => (await import('./commands/unit.js')).unit },
  results: { summary: 'Print every unit’s outcome, streamed (JSONL, JSON, CSV with structured outputs as columns, Markdown), or write them to a sink.', load: async () => (await import('./commands/results.js')).results },
  pause: { summary: 'Stop claiming new units; running units finish.', load: async () => (await import('./commands/control.js')).pause },
  resume: { summary: 'Resume a paused job.', load: async () => (await import('./commands/control.js')).resume },
  cancel: { summary: 'Cancel a job; running units’ processes are killed.', load: async () => (await import('./commands/control.js')).cancel },
  retry: { summary: 'Give every failed unit a fresh set of retries.', load: async () => (await import('./commands/control.js')).retry },
  'retry-unit': { summary: 'Run one unit again with fresh retries: a failed one, or a succeeded one to re-do it.', load: async () => (await import('./commands/control.js')).retryUnit },
  'stop-unit': { summary: 'Stop one running unit (its processes are killed): FAILED, or back to PENDING with --then pending.', load: async () => (await import('./commands/control.js')).stopUnit },
  update: { summary: 'Edit a CREATED job’s prompt, intent or name; raise any live job’s budget or allow auto-resume.', load: async () => (await import('./commands/update.js')).update },
  sync: { summary: 'Sync two inventories (files, JSONL/JSON/CSV, SQLite or PostgreSQL tables): run, plan (dry run) or status.', load: async () => (await import('./commands/sync.js')).sync },
  executor: { summary: 'Run an executor in the foreground: claim and run units until idle (SIGTERM drains).', load: async () => (await import('./commands/executor.js')).executor },
  mcp: { summary: 'Serve the MCP tools on stdio, for Claude Code, Claude Desktop and other MCP clients.', load: async () => (await import('./commands/mcp.js')).mcp },
  serve: { summary: 'Serve the HTTP API, event streams, metrics and dashboard (and MCP at /mcp), protected by an API key; `abp serve stop` stops it.', load: async () => (await import('./commands/serve.js')).serve },
  dashboard: { summary: 'Print a one-time link that opens the dashboard of the running `abp serve`.', load: async () => (await import('./commands/dashboard.js')).dashboard },
  doctor: { summary: 'Check every worker type: installed, reachable, logged in (how to fix it when not).', load: async () => (await import('./commands/doctor.js')).doctor },
  migrate: { summary: 'Apply pending database migrations (SQLite or PostgreSQL) and list them all.', load: async () => (await import('./commands/migrate.js')).migrate },
};

const GLOBAL = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  home: { type: 'string' },
  db: { type: 'string' },
} as const;

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  return [
    'abp — agentic batch processor: one instruction, applied to every item, in parallel.',
    '',
    'Usage: abp COMMAND [ARGS] [--json] [--home DIR] [--db PATH]',
    '',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --json (machine-readable output on stdout) and --help.',
    'Exit codes: 0 ok, 1 failure, 2 usage. Environment: ABP_HOME, ABP_DB, ABP_SKIP_TEST, ABP_MAX_WORKERS, ABP_MAX_RETRIES (README: Configuration).',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    const { VERSION } = await import('../version.js');
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  const wantsJson = rest.includes('--json');
  let app: App | undefined;
  let reader: Awaited<ReturnType<CommandContext['jobs']>> | undefined;
  try {
    if (!entry) throw usage(`unknown command ${JSON.stringify(name)}; run abp --help for the list`);
    const command = await entry.load();
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...GLOBAL, ...command.options }, allowPositionals: true, strict: true });
    } catch (err) {
      throw usage(`${errorMessage(err).replace(/^Unknown option/, 'unknown option').replace(/\. To specify a positional.*$/s, '')}\nusage: ${command.usage}`);
    }
    if (command.steadyYoungGeneration) steadyYoungGeneration();
    const values = parsed.values as CommandContext['values'];
    if (values.help) {
      process.stdout.write(`${entry.summary}\n\nusage: ${command.usage}\n`);
      return 0;
    }
    const env = { ...process.env };
    if (values.home) env.ABP_HOME = String(values.home);
    if (values.db) env.ABP_DB = String(values.db);
    const json = Boolean(values.json);
    const ctx: CommandContext = {
      values,
      positionals: parsed.positionals,
      json,
      app: async () => (app ??= await (await import('../app.js')).createApp(resolveConfig(env))),
      // Job rows for status and list: plain SQL on an up-to-date SQLite file (the
      // composition root, with its package.json read, never loads), else the store.
      jobs: async () => app?.repo ?? (reader ??= await (await import('../open-store.js')).openJobReader(resolveConfig(env))),
      config: () => resolveConfig(env),
      print(human, data) {
        process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human}\n`);
      },
    };
    return (await command.run(ctx)) ?? 0;
  } catch (err) {
    const abp = err instanceof AbpError ? err : undefined;
    const code = abp?.code ?? 'internal';
    // The hint wording loads only when there is an error to word.
    const message = abp ? (await import('./hints.js')).cliErrorText(abp.message, abp.details) : errorMessage(err);
    if (wantsJson) process.stdout.write(`${JSON.stringify({ error: { code, message, ...(abp?.details ?? {}) } }, null, 2)}\n`);
    process.stderr.write(`abp: ${message}\n`);
    if (!abp && process.env.ABP_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return code === 'invalid_input' ? 2 : 1;
  } finally {
    await app?.close();
    await reader?.close();
  }
}

// A reader that stops early (abp results 1 | head) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await main(process.argv.slice(2));
