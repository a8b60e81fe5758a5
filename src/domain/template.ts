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

export function lookup(values: TemplateValues, path: string): unknown {
  return lookupParts(values, path.split('.'));
}

function lookupParts(values: TemplateValues, parts: readonly string[]): unknown {
  let current: unknown = values;
  for (const part of parts) {
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

/**
 * A template scanned once: its literal text and, between, each placeholder's
 * path split at its dots. An executor renders one job's template for every unit,
 * so the scan is kept, by the template's text, for the last few templates.
 */
interface Compiled {
  /** Literal text at even places, placeholder paths at odd ones. */
  parts: (string | readonly string[])[];
  /** The first segment of every placeholder's path. */
  roots: ReadonlySet<string>;
}

const COMPILED_KEPT = 32;
const compiledTemplates = new Map<string, Compiled>();

function compiled(template: string): Compiled {
  let c = compiledTemplates.get(template);
  if (c !== undefined) return c;
  const parts: (string | readonly string[])[] = [];
  const roots = new Set<string>();
  let at = 0;
  for (const m of template.matchAll(PLACEHOLDER)) {
    const path = (m[1] as string).split('.');
    parts.push(template.slice(at, m.index), path);
    roots.add(path[0] as string);
    at = m.index + m[0].length;
  }
  parts.push(template.slice(at));
  c = { parts, roots };
  if (compiledTemplates.size >= COMPILED_KEPT) compiledTemplates.delete(compiledTemplates.keys().next().value as string);
  compiledTemplates.set(template, c);
  return c;
}

/** Whether the template has a placeholder whose path starts with `root` ("item" for {{item.name}}). */
export function usesRoot(template: string, root: string): boolean {
  return compiled(template).roots.has(root);
}

export function render(template: string, values: TemplateValues): string {
  return renderWithPrefix(template, values, () => false).text;
}

/**
 * Renders the template, and says how many of the text's first characters come
 * before the first placeholder whose path passes `test` (the whole text's length
 * when none does).
 */
export function renderWithPrefix(template: string, values: TemplateValues, test: (path: readonly string[]) => boolean): { text: string; prefix_chars: number } {
  const { parts } = compiled(template);
  let text = parts[0] as string;
  let prefix = -1;
  for (let i = 1; i < parts.length; i += 2) {
    const path = parts[i] as readonly string[];
    if (prefix < 0 && test(path)) prefix = text.length;
    text += stringify(lookupParts(values, path)) + (parts[i + 1] as string);
  }
  return { text, prefix_chars: prefix < 0 ? text.length : prefix };
}

/** A fenced block that no content can close early: the fence is longer than any backtick run inside. */
export function fence(content: string, info = ''): string {
  // A loop, not Math.max(...runs): a big item can hold more runs than a call can take arguments.
  let longest = 0;
  if (content.includes('`')) for (const m of content.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  const bar = '`'.repeat(Math.max(3, longest + 1));
  return `${bar}${info}\n${content}\n${bar}`;
}
