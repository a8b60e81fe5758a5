/**
 * The single-pass renderer behind prompts and shell arguments. It scans the
 * template once; inserted values are never scanned again, so braces or
 * placeholders inside an intent or an item stay literal.
 */
const PLACEHOLDER = /\{\{\s*([A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*\}\}/g;

export type TemplateValues = Record<string, unknown>;

export function placeholdersOf(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1] as string);
}

/** Where the first placeholder whose path passes `test` starts in the template, or -1. */
export function firstPlaceholderAt(template: string, test: (path: string) => boolean): number {
  for (const m of template.matchAll(PLACEHOLDER)) if (test(m[1] as string)) return m.index;
  return -1;
}

export function lookup(values: TemplateValues, path: string): unknown {
  let current: unknown = values;
  for (const part of path.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    if (!Object.prototype.hasOwnProperty.call(current, part)) return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

export function stringify(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value);
}

export function render(template: string, values: TemplateValues): string {
  return template.replace(PLACEHOLDER, (_match, path: string) => stringify(lookup(values, path)));
}

/** A fenced block that no content can close early: the fence is longer than any backtick run inside. */
export function fence(content: string, info = ''): string {
  // A loop, not Math.max(...runs): a big item can hold more runs than a call can take arguments.
  let longest = 0;
  for (const m of content.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  const bar = '`'.repeat(Math.max(3, longest + 1));
  return `${bar}${info}\n${content}\n${bar}`;
}
