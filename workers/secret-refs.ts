import { z } from 'zod';
import { ENV_REF } from '../src/domain/env-refs.js';
import { render, type TemplateValues } from '../src/domain/template.js';

/**
 * Secrets stay out of worker_config, which is stored in the database and shown by
 * `abp status`, the API and the MCP tools. A value in `env` (or an http-llm
 * header) may name a variable of the executor's environment instead:
 * `"GITHUB_TOKEN": "{{env.GITHUB_TOKEN}}"`, `"api-key": "{{env.AZURE_OPENAI_KEY}}"`,
 * `"Authorization": "Bearer {{env.ROUTER_TOKEN}}"`. The reference is stored; the
 * value is read only when the unit runs.
 */

/** Name parts that say a value is a credential: DB_PASSWORD, X-Auth-Token, Authorization, Cookie, … */
const SECRET_PARTS = new Set(['SECRET', 'PASSWORD', 'PASSWD', 'TOKEN', 'APIKEY', 'CREDENTIAL', 'CREDENTIALS', 'AUTHORIZATION', 'COOKIE']);

/** Whether a variable or header name says its value is a credential (ANTHROPIC_API_KEY, x-api-key, PGPASSWORD, …). */
export function looksSecret(name: string): boolean {
  const upper = name.toUpperCase();
  const parts = upper.split(/[^A-Z0-9]+/).filter(Boolean);
  return parts.some((part) => SECRET_PARTS.has(part)) || parts.at(-1) === 'KEY' || /(KEY|TOKEN|SECRET|PASSWORD|PASSWD)$/.test(upper);
}

/** Whether a value carries a credential scheme with a literal after it ("Bearer sk-…", "Basic dXNl…"). */
const literalCredential = (value: string) => /^\s*(Bearer|Basic|Token)\s+(?!\{\{)\S/i.test(value);

/**
 * A record of names to values (env variables, HTTP headers) that refuses a literal
 * secret: a credential-like name with a value that is neither empty (which
 * removes a variable) nor built from {{env.NAME}} references.
 */
export function secretFreeRecord() {
  return z.record(z.string(), z.string()).superRefine((record, ctx) => {
    for (const [name, value] of Object.entries(record)) {
      if (value === '' || !(looksSecret(name) || literalCredential(value))) continue;
      const literal = value.replace(ENV_REF, '');
      if (literal.replace(/^\s*(Bearer|Basic|Token)\s+/i, '').trim() === '') continue;
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: `looks like a secret, and worker_config is stored in the database; set it in the environment abp's executor runs in and write "{{env.${/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : 'NAME'}}}" here instead`,
      });
    }
  });
}

/** Fills in {{env.NAME}} references from the environment; an unset variable becomes empty. */
export function resolveEnvRefs(value: string, env: Record<string, string | undefined> = process.env): string {
  return value.replace(ENV_REF, (_match, name: string) => env[name] ?? '');
}

/** A record's values with their {{env.NAME}} references filled in. */
export function resolveEnvRecord(record: Record<string, string>, env: Record<string, string | undefined> = process.env): Record<string, string> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, resolveEnvRefs(v, env)]));
}

/**
 * Renders a template with a unit's placeholders and its {{env.NAME}} references
 * in one pass, so nothing inside an item is ever read as a reference. Only the
 * variables the template names are offered: `{{env}}` alone is empty.
 */
export function renderWithEnv(template: string, values: TemplateValues, env: Record<string, string | undefined> = process.env): string {
  const named: Record<string, string> = {};
  for (const [, name] of template.matchAll(ENV_REF)) named[name as string] = env[name as string] ?? '';
  return render(template, { ...values, env: named });
}

/** The values of the variables a record's {{env.NAME}} references name (to scrub from stored errors). */
export function referencedValues(record: Record<string, string>, env: Record<string, string | undefined> = process.env): string[] {
  return Object.values(record).flatMap((v) => [...v.matchAll(ENV_REF)].map((m) => env[m[1] as string] ?? '')).filter(Boolean);
}
