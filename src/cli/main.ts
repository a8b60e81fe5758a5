#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { createApp, type App } from '../app.js';
import { resolveConfig } from '../config.js';
import { AbpError, errorMessage } from '../domain/errors.js';
import type { Command, CommandContext } from './command.js';
import { usage } from './command.js';
import { cancel, pause, resume, retry } from './commands/control.js';
import { approve } from './commands/approve.js';
import { create } from './commands/create.js';
import { dashboard } from './commands/dashboard.js';
import { doctor } from './commands/doctor.js';
import { enumeratorsCommand } from './commands/enumerators.js';
import { preview } from './commands/preview.js';
import { executor } from './commands/executor.js';
import { list } from './commands/list.js';
import { mcp } from './commands/mcp.js';
import { results } from './commands/results.js';
import { serve } from './commands/serve.js';
import { start } from './commands/start.js';
import { status } from './commands/status.js';
import { sync } from './commands/sync.js';
import { unit } from './commands/unit.js';
import { units } from './commands/units.js';
import { update } from './commands/update.js';
import { watch } from './commands/watch.js';
import { migrate } from './commands/migrate.js';

const COMMANDS: Command[] = [create, preview, approve, enumeratorsCommand, start, status, watch, list, units, unit, results, pause, resume, cancel, retry, update, sync, executor, mcp, serve, dashboard, doctor, migrate];

const GLOBAL = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  home: { type: 'string' },
  db: { type: 'string' },
} as const;

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'abp — agentic batch processor: one instruction, applied to every item, in parallel.',
    '',
    'Usage: abp COMMAND [ARGS] [--json] [--home DIR] [--db PATH]',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --json (machine-readable output on stdout) and --help.',
    'Exit codes: 0 ok, 1 failure, 2 usage. Environment: ABP_HOME, ABP_DB, ABP_SKIP_TEST, ABP_MAX_WORKERS.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    const { VERSION } = await import('../app.js');
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  const wantsJson = rest.includes('--json');
  let app: App | undefined;
  try {
    if (!command) throw usage(`unknown command ${JSON.stringify(name)}; run abp --help for the list`);
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...GLOBAL, ...command.options }, allowPositionals: true, strict: true });
    } catch (err) {
      throw usage(`${errorMessage(err).replace(/^Unknown option/, 'unknown option').replace(/\. To specify a positional.*$/s, '')}\nusage: ${command.usage}`);
    }
    const values = parsed.values as CommandContext['values'];
    if (values.help) {
      process.stdout.write(`${command.summary}\n\nusage: ${command.usage}\n`);
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
      app: async () => (app ??= await createApp(resolveConfig(env))),
      print(human, data) {
        process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human}\n`);
      },
    };
    return (await command.run(ctx)) ?? 0;
  } catch (err) {
    const abp = err instanceof AbpError ? err : undefined;
    const code = abp?.code ?? 'internal';
    const message = abp ? abp.message : errorMessage(err);
    if (wantsJson) process.stdout.write(`${JSON.stringify({ error: { code, message, ...(abp?.details ?? {}) } }, null, 2)}\n`);
    process.stderr.write(`abp: ${message}\n`);
    if (!abp && process.env.ABP_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return code === 'invalid_input' ? 2 : 1;
  } finally {
    await app?.close();
  }
}

// A reader that stops early (abp results 1 | head) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await main(process.argv.slice(2));
