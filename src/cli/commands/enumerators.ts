import type { Command } from '../command.js';

interface JsonSchemaProperty {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  anyOf?: JsonSchemaProperty[];
  items?: JsonSchemaProperty;
}

function typeOf(p: JsonSchemaProperty): string {
  if (p.enum) return p.enum.map((v) => JSON.stringify(v)).join('|');
  if (p.anyOf) return p.anyOf.map(typeOf).join(' | ');
  if (p.type === 'array') return `${p.items ? typeOf(p.items) : 'any'}[]`;
  return Array.isArray(p.type) ? p.type.join('|') : (p.type ?? 'any');
}

export const enumeratorsCommand: Command = {
  usage: 'abp enumerators [TYPE] [--json]',
  options: {},
  async run(ctx) {
    const app = await ctx.app();
    const wanted = ctx.positionals[0];
    const list = app.orchestrator.listEnumerators().filter((e) => wanted === undefined || e.type === wanted);
    if (wanted !== undefined && list.length === 0) {
      // Registry.get names the valid types in its error.
      app.orchestrator.validate({ name: 'x', user_intent: 'x', enumerator_type: wanted, worker_type: 'shell' });
    }
    const human = list
      .map((e) => {
        const schema = e.config_schema as { properties?: Record<string, JsonSchemaProperty>; required?: string[] };
        const required = new Set(schema.required ?? []);
        const fields = Object.entries(schema.properties ?? {}).map(([name, p]) => {
          const flags = [required.has(name) ? 'required' : undefined, p.default !== undefined ? `default ${JSON.stringify(p.default)}` : undefined].filter(Boolean);
          return `    ${name}: ${typeOf(p)}${flags.length ? ` (${flags.join(', ')})` : ''}${p.description ? ` — ${p.description}` : ''}`;
        });
        return [`${e.type}${e.requires_approval ? '  [runs code: needs approval]' : ''}`, `  ${e.description}`, ...fields].join('\n');
      })
      .join('\n\n');
    ctx.print(human, list);
  },
};
