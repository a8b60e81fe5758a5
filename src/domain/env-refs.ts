/**
 * `{{env.NAME}}`: a value in a worker_config that names a variable of the
 * executor's environment instead of holding a secret. The syntax has this one
 * home; workers fill the references in (workers/secret-refs.ts), and the
 * launcher reads which variables a job names (src/executor/launcher.ts).
 */
export const ENV_REF = /\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** The names every {{env.NAME}} reference in a value names, at any depth of objects and lists (a worker_config). */
export function envRefNames(value: unknown): string[] {
  const names = new Set<string>();
  const visit = (v: unknown): void => {
    if (typeof v === 'string') for (const [, name] of v.matchAll(ENV_REF)) names.add(name as string);
    else if (Array.isArray(v)) v.forEach(visit);
    else if (v !== null && typeof v === 'object') Object.values(v).forEach(visit);
  };
  visit(value);
  return [...names];
}
