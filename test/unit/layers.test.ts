import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, relative, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/*
 * The layers, read from the imports. Every relative specifier counts: static
 * `import … from`, `export … from`, `import type` (a type import is still an
 * arrow) and dynamic `import('…')`. A file's layer is its folder under src/
 * (src/store), the file itself for a top-level file of src/ (src/app.ts), or
 * enumerators / workers.
 */

const ROOT = join(dirname(new URL(import.meta.url).pathname), '..', '..');
const SCANNED = ['src', 'enumerators', 'workers'];

/*
 * Allowed to every layer but src/domain, and themselves held to importing
 * nothing of ours, so allowing them opens no back door:
 * - src/util: helpers with no knowledge of jobs (process groups, the SQLite file opener);
 * - src/package-root.ts: where the package's files (prompts, migrations) are.
 * src/config.ts is not on the list: it reads the environment, and the inner
 * layers (store, contracts, enumerators, workers) take their settings as
 * arguments. The other layers may read it as they may import anything below them.
 */
const LEAVES = ['src/util', 'src/package-root.ts'];

/** Layer → the only layers it may import (besides itself and LEAVES). */
const ONLY: Record<string, { allowed: string[]; rule: string }> = {
  'src/domain': { allowed: [], rule: 'src/domain imports nothing outside src/domain' },
  'src/store': { allowed: ['src/domain'], rule: 'src/store imports only src/domain' },
  'src/contracts': { allowed: ['src/domain'], rule: 'src/contracts imports only src/domain' },
  enumerators: { allowed: ['src/contracts', 'src/domain'], rule: 'enumerators import only src/contracts, src/domain and src/util' },
  workers: { allowed: ['src/contracts', 'src/domain'], rule: 'workers import only src/contracts, src/domain and src/util' },
};

/*
 * Front ends reach the store through the composition root (src/app.ts: the App's
 * repo, orchestrator and task rows) or, for the reads that must not load
 * the app (`abp status`, `abp list`, `abp mcp` polling a job) and `abp migrate`, through src/open-store.ts,
 * which like app.ts only chooses and opens. The other rules leave the top-level
 * files of src/ (app.ts, index.ts, open-store.ts) and the layers not named in
 * ONLY free to import anything below them; the cycle check still covers them.
 */
const FRONT_ENDS = ['src/cli', 'src/http', 'src/mcp'];
const REGISTRIES = ['enumerators/index.ts', 'workers/index.ts'];

export interface Arrow {
  from: string;
  to: string;
}

export interface KnownArrow extends Arrow {
  reason: string;
}

/*
 * Arrows that break a rule and are not fixed yet (issue 19). Each is allowed
 * here, and the test fails once one no longer occurs or no longer breaks a
 * rule, so this list can only shrink.
 */
const KNOWN: KnownArrow[] = [];

export function layerOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] === 'src') return parts.length === 2 ? file : `src/${parts[1]}`;
  return parts[0]!;
}

/** The arrows of one file: relative specifiers only, resolved to repository paths (.js → .ts). */
export function arrowsOf(file: string, text: string): Arrow[] {
  const { importedFiles } = ts.preProcessFile(text, true, true);
  return importedFiles
    .map((i) => i.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => ({ from: file, to: posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.js$/, '.ts') }));
}

function rulesBroken(a: Arrow): string[] {
  const from = layerOf(a.from);
  const to = layerOf(a.to);
  const broken: string[] = [];
  if (REGISTRIES.includes(a.to) && a.from !== 'src/app.ts') broken.push('only src/app.ts imports the registries');
  if (from === to) return broken;
  if (LEAVES.includes(from)) broken.push(`${from} imports nothing of ours (it is allowed everywhere)`);
  const only = ONLY[from];
  if (only && !only.allowed.includes(to) && !(from !== 'src/domain' && LEAVES.includes(to))) broken.push(only.rule);
  if (FRONT_ENDS.includes(from) && to === 'src/store') broken.push('front ends (src/cli, src/http, src/mcp) never import src/store');
  return broken;
}

const key = (a: Arrow) => `${a.from} → ${a.to}`;

/** Tarjan's strongly connected components of the folder graph; each with more than one layer is a cycle. */
function cycles(arrows: Arrow[]): string[][] {
  const graph = new Map<string, Set<string>>();
  for (const a of arrows) {
    const f = layerOf(a.from);
    const t = layerOf(a.to);
    if (!graph.has(f)) graph.set(f, new Set());
    if (!graph.has(t)) graph.set(t, new Set());
    if (f !== t) graph.get(f)!.add(t);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

/** Every broken rule and folder cycle not on `known`, and every entry of `known` that is stale. */
export function checkLayers(arrows: Arrow[], known: readonly KnownArrow[] = []): { violations: string[]; stale: string[] } {
  const knownKeys = new Set(known.map(key));
  const violations: string[] = [];
  for (const a of arrows) {
    if (knownKeys.has(key(a))) continue;
    for (const rule of rulesBroken(a)) violations.push(`${a.from} imports ${a.to}: ${rule}`);
  }
  const unknownArrows = arrows.filter((a) => !knownKeys.has(key(a)));
  for (const scc of cycles(unknownArrows)) {
    const inside = unknownArrows.filter((a) => layerOf(a.from) !== layerOf(a.to) && scc.includes(layerOf(a.from)) && scc.includes(layerOf(a.to)));
    for (const a of inside) violations.push(`${a.from} imports ${a.to}: no import cycle between folders (cycle: ${scc.join(', ')})`);
  }
  const present = new Set(arrows.map(key));
  const cyclic = cycles(arrows);
  const stale: string[] = [];
  for (const k of known) {
    if (!present.has(key(k))) {
      stale.push(`KNOWN ${key(k)} no longer occurs: remove it from KNOWN`);
    } else {
      const inCycle = cyclic.some((scc) => scc.includes(layerOf(k.from)) && scc.includes(layerOf(k.to)));
      if (rulesBroken(k).length === 0 && !inCycle) stale.push(`KNOWN ${key(k)} no longer breaks a rule: remove it from KNOWN`);
    }
  }
  return { violations: [...new Set(violations)].sort(), stale };
}

function sourceFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.ts')) files.push(relative(ROOT, path).split(sep).join('/'));
    }
  };
  for (const dir of SCANNED) walk(join(ROOT, dir));
  return files.sort();
}

function repositoryArrows(): Arrow[] {
  return sourceFiles().flatMap((file) => arrowsOf(file, readFileSync(join(ROOT, file), 'utf8')));
}

describe('the layers', () => {
  it('hold in the source: every import follows the rules, and no folders import each other in a cycle', () => {
    const arrows = repositoryArrows();
    // The reader sees the composition root's dynamic imports, or it would see nothing of the registries.
    expect(arrows).toContainEqual({ from: 'src/app.ts', to: 'workers/index.ts' });
    const { violations, stale } = checkLayers(arrows, KNOWN);
    expect(violations).toEqual([]);
    expect(stale).toEqual([]);
  });

  it('every relative import names a file that exists', () => {
    const files = new Set(sourceFiles());
    const missing = repositoryArrows().filter((a) => SCANNED.includes(a.to.split('/')[0]!) && !files.has(a.to));
    expect(missing).toEqual([]);
  });

  it('fail when a forbidden import is added, naming the file, the import and the rule', () => {
    const files: Record<string, string> = {
      'src/domain/x.ts': "import type { Repository } from '../store/repository.js';\nexport const x = 1;\n",
      'src/store/repository.ts': "import { x } from '../domain/x.js';\n",
      'workers/w.ts': "export { y } from '../src/sync/planner.js';\nconst lazy = () => import('../enumerators/index.js');\n",
      'src/mcp/m.ts': "import {\n  a,\n} from '../http/h.js';\nimport '../store/task-store.js';\n",
      'src/http/h.ts': "import { m } from '../mcp/m.js';\n",
    };
    const arrows = Object.entries(files).flatMap(([file, text]) => arrowsOf(file, text));
    const { violations } = checkLayers(arrows);
    expect(violations).toContain('src/domain/x.ts imports src/store/repository.ts: src/domain imports nothing outside src/domain');
    expect(violations).toContain('workers/w.ts imports src/sync/planner.ts: workers import only src/contracts, src/domain and src/util');
    expect(violations).toContain('workers/w.ts imports enumerators/index.ts: only src/app.ts imports the registries');
    expect(violations).toContain('src/mcp/m.ts imports src/store/task-store.ts: front ends (src/cli, src/http, src/mcp) never import src/store');
    expect(violations).toContain('src/mcp/m.ts imports src/http/h.ts: no import cycle between folders (cycle: src/http, src/mcp)');
    expect(violations).toContain('src/store/repository.ts imports src/domain/x.ts: no import cycle between folders (cycle: src/domain, src/store)');
    // Also the other halves of both cycles, and workers/w.ts's registry import breaking the workers' rule.
    expect(violations).toContain('src/http/h.ts imports src/mcp/m.ts: no import cycle between folders (cycle: src/http, src/mcp)');
    expect(violations).toContain('src/domain/x.ts imports src/store/repository.ts: no import cycle between folders (cycle: src/domain, src/store)');
    expect(violations).toContain('workers/w.ts imports enumerators/index.ts: workers import only src/contracts, src/domain and src/util');
    expect(violations).toHaveLength(9);

    // A known arrow is allowed while it occurs, and reported once it no longer does.
    const known = [
      { from: 'src/domain/x.ts', to: 'src/store/repository.ts', reason: 'synthetic' },
      { from: 'src/cli/gone.ts', to: 'src/store/repository.ts', reason: 'synthetic' },
    ];
    const checked = checkLayers(arrows, known);
    expect(checked.violations.filter((v) => v.startsWith('src/domain/x.ts'))).toEqual([]);
    expect(checked.stale).toEqual(['KNOWN src/cli/gone.ts → src/store/repository.ts no longer occurs: remove it from KNOWN']);
  });

  it('a unit’s status is written in one place: store/unit-moves.ts (applyUnitMove), and its counters by its deltas', () => {
    expect(statusWriters(Object.fromEntries(sourceFiles().map((f) => [f, readFileSync(join(ROOT, f), 'utf8')])))).toEqual(['src/store/unit-moves.ts']);
    // The check itself sees a status written by hand, through Kysely or in SQL text.
    expect(
      statusWriters({
        'src/store/a.ts': "await t.updateTable('work_units')\n  .set({ worker_pid: null, status: 'PENDING' })\n  .where('id', '=', 1)",
        'src/store/b.ts': 'const text = `update "work_units" set "status" = ? where "id" = ?`;',
        'src/store/c.ts': "await t.updateTable('work_units').set({ worker_pid: pid }).where('status', '=', 'RUNNING')",
      }),
    ).toEqual(['src/store/a.ts', 'src/store/b.ts']);
  });
});

/** Files that set work_units.status: a Kysely update of work_units whose set names status, or SQL text that does. */
function statusWriters(files: Record<string, string>): string[] {
  const writers: string[] = [];
  for (const [file, text] of Object.entries(files)) {
    const kysely = [...text.matchAll(/updateTable\('work_units'\)/g)].some((m) => {
      const rest = text.slice(m.index! + m[0].length);
      const set = rest.slice(0, rest.search(/\.where\(|\.execute|;/));
      return /\bstatus\b/.test(set);
    });
    const raw = /update\s+"?work_units"?\s+set\s[^;`]*"?status"?\s*=/i.test(text);
    if (kysely || raw) writers.push(file);
  }
  return writers.sort();
}
