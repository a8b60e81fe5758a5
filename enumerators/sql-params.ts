import { AbpError } from '../src/domain/errors.js';

/**
 * Rewrites `:name` placeholders to PostgreSQL's `$1, $2, …`, which is all pg
 * understands. Strings, quoted identifiers, dollar-quoted bodies, comments and
 * `::type` casts are copied untouched, so only real placeholders change.
 */
export function namedToPositional(query: string, params: Record<string, unknown>): { text: string; values: unknown[] } {
  const order = new Map<string, number>();
  const values: unknown[] = [];
  let out = '';
  let i = 0;
  const n = query.length;
  const copyUntil = (end: number) => {
    out += query.slice(i, end);
    i = end;
  };
  while (i < n) {
    const c = query[i] as string;
    const next = query[i + 1];
    if (c === "'" || c === '"') {
      // '' and "" double the quote inside; the literal ends at a lone quote.
      let j = i + 1;
      for (;;) {
        const k = query.indexOf(c, j);
        if (k === -1) {
          j = n;
          break;
        }
        if (query[k + 1] === c) {
          j = k + 2;
          continue;
        }
        j = k + 1;
        break;
      }
      copyUntil(j);
    } else if (c === '-' && next === '-') {
      const k = query.indexOf('\n', i);
      copyUntil(k === -1 ? n : k + 1);
    } else if (c === '/' && next === '*') {
      let depth = 0;
      let j = i;
      while (j < n) {
        if (query.startsWith('/*', j)) {
          depth++;
          j += 2;
        } else if (query.startsWith('*/', j)) {
          depth--;
          j += 2;
          if (depth === 0) break;
        } else j++;
      }
      copyUntil(j);
    } else if (c === '$' && /[A-Za-z_$]/.test(next ?? '') && /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.test(query.slice(i))) {
      const tag = (/^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(query.slice(i)) as RegExpExecArray)[0];
      const k = query.indexOf(tag, i + tag.length);
      copyUntil(k === -1 ? n : k + tag.length);
    } else if (c === ':' && next === ':') {
      copyUntil(i + 2);
    } else if (c === ':' && /[A-Za-z_]/.test(next ?? '')) {
      const name = (/^[A-Za-z_][A-Za-z0-9_]*/.exec(query.slice(i + 1)) as RegExpExecArray)[0];
      if (!Object.hasOwn(params, name)) {
        throw new AbpError('invalid_input', `enumerator_config.params: the query uses :${name} but params has no ${JSON.stringify(name)} (params: ${Object.keys(params).join(', ') || 'none'})`);
      }
      let index = order.get(name);
      if (index === undefined) {
        values.push(params[name]);
        index = values.length;
        order.set(name, index);
      }
      out += `$${index}`;
      i += 1 + name.length;
    } else {
      copyUntil(i + 1);
    }
  }
  return { text: out, values };
}
