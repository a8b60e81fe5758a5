import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AbpError } from '../domain/errors.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { processAlive } from '../util/process-group.js';

/**
 * `abp serve` writes its address to $ABP_HOME/serve.json, so that `abp dashboard`
 * and the MCP `dashboard_url` tool (other processes on the same home and
 * database) can build a link to it.
 */
export interface ServeRecord {
  url: string;
  pid: number;
  started_at: string;
}

const file = (home: string) => join(home, 'serve.json');

export function writeServeRecord(home: string, url: string): void {
  const record: ServeRecord = { url, pid: process.pid, started_at: new Date().toISOString() };
  writeFileSync(file(home), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
}

/** Removes the record if it is this process's own (a newer server may have replaced it). */
export function removeServeRecord(home: string): void {
  const record = readRecord(home);
  if (record?.pid === process.pid) rmSync(file(home), { force: true });
}

function readRecord(home: string): ServeRecord | undefined {
  if (!existsSync(file(home))) return undefined;
  try {
    const parsed = JSON.parse(readFileSync(file(home), 'utf8')) as ServeRecord;
    return typeof parsed.url === 'string' && Number.isInteger(parsed.pid) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The running server's record, or undefined when none runs (a record left by a dead server is ignored). */
export function runningServer(home: string): ServeRecord | undefined {
  const record = readRecord(home);
  return record && processAlive(record.pid) ? record : undefined;
}

/** A one-time dashboard link for the server running on this home. */
export async function dashboardLink(orchestrator: Orchestrator, home: string, baseUrl?: string) {
  const server = baseUrl ? { url: baseUrl } : runningServer(home);
  if (!server) {
    throw new AbpError('conflict', `no abp serve is running for ${home}; start one with \`abp serve\` (it prints a dashboard link itself)`, { details: { home } });
  }
  const { token, expires_at } = await orchestrator.monitor.mintDashboardToken();
  return {
    url: `${server.url}/login?token=${token}`,
    dashboard: `${server.url}/`,
    expires_at,
    note: 'The link works once, within 15 minutes: it exchanges the token for a browser session cookie.',
  };
}
