import type { ParseArgsConfig } from 'node:util';
import type { App } from '../app.js';
import type { AbpConfig } from '../config.js';
import type { openJobReader } from '../open-store.js';
import { AbpError } from '../domain/errors.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface CommandContext {
  values: Values;
  positionals: string[];
  json: boolean;
  /** Opens the database on first use; commands that need none never pay for it. */
  app(): Promise<App>;
  /** Job rows alone (`abp status`, `abp list`): on SQLite, without loading Kysely or the app. */
  jobs(): ReturnType<typeof openJobReader>;
  /** The configuration from the environment and --home/--db. */
  config(): AbpConfig;
  print(human: string, data: unknown): void;
}

/** One CLI command; its name and summary live in main.ts's table, so `abp --help` loads no command. */
export interface Command {
  usage: string;
  options: OptionSpec;
  /** Hold V8's young generation at its start-up size for this process (v8-tuning.ts). */
  steadyYoungGeneration?: boolean;
  run(ctx: CommandContext): Promise<number | void>;
}

/** A usage error: exit code 2, and the message names the flag or argument. */
export function usage(message: string): AbpError {
  return new AbpError('invalid_input', message, { details: { usage: true } });
}

export function jobIdArg(ctx: CommandContext, name = 'JOB'): number {
  const raw = ctx.positionals[0];
  if (raw === undefined) throw usage(`missing argument ${name} (a job id)`);
  return positiveInt(raw, name);
}

export function positiveInt(raw: string, what: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || !Number.isSafeInteger(Number(raw))) {
    throw usage(`${what}: expected a positive integer, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

export function intFlag(ctx: CommandContext, flag: string, min = 0): number | undefined {
  const raw = ctx.values[flag];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^-?\d+$/.test(raw) || Number(raw) < min) {
    throw usage(`--${flag}: expected an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

/** A flag that takes on or off. */
export function onOff(ctx: CommandContext, flag: string): boolean | undefined {
  const v = ctx.values[flag];
  if (v === undefined) return undefined;
  if (v !== 'on' && v !== 'off') throw usage(`--${flag}: expected on or off, got ${JSON.stringify(v)}`);
  return v === 'on';
}

export function numberFlag(ctx: CommandContext, flag: string): number | undefined {
  const raw = ctx.values[flag];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n)) {
    throw usage(`--${flag}: expected a number, got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function enumFlag<T extends string>(ctx: CommandContext, flag: string, allowed: readonly T[]): T[] | undefined {
  const raw = ctx.values[flag];
  if (raw === undefined) return undefined;
  const list = (Array.isArray(raw) ? raw : [raw]).flatMap((v) => String(v).split(',')).map((v) => v.trim().toUpperCase());
  for (const v of list) {
    if (!(allowed as readonly string[]).includes(v)) throw usage(`--${flag}: ${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
  }
  return list as T[];
}
