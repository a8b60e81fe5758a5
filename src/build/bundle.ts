/**
 * `npm run build`'s second step: bundles the CLI that tsc compiled into dist/cli/.
 *
 * Why: Node loads ES modules one file at a time, and abp's dependencies are many
 * small files (Kysely alone is over 250). Unbundled, `abp create` read ~480 modules
 * before it did anything; every CLI call, every executor and `abp mcp` paid that.
 * esbuild joins them into a few chunks. Commands still load lazily: each command's
 * dynamic import becomes its own chunk, shared code a shared chunk.
 *
 * Kept outside the bundle, loaded from node_modules at run time: native addons and
 * piscina (it starts its thread from a file beside its own). Files that abp starts
 * by path as their own thread (the sync snapshot thread) stay where tsc put them,
 * under dist/src/.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { PACKAGE_ROOT } from '../package-root.js';

/**
 * zod exports its error-message translations as one namespace (`z.locales`), so
 * bundling `z` brings all ~60 of them (~300 KB of source every command that
 * validates would parse). abp keeps zod's default English messages (zod's
 * schemas load `en` directly) and never switches locale: the namespace
 * resolves to an empty module.
 */
const zodWithoutLocales: Plugin = {
  name: 'zod-without-locales',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]/.test(args.importer) ? { path: 'zod-locales', namespace: 'abp-empty' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'abp-empty' }, () => ({ contents: 'export {};', loader: 'js' }));
  },
};

const outdir = join(PACKAGE_ROOT, 'dist', 'cli');
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: [join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // better-sqlite3's JavaScript is bundled; its addon is opened by path (src/util/sqlite-file.ts).
  external: ['*.node', 'piscina'],
  chunkNames: 'chunks/[name]-[hash]',
  entryNames: '[name]',
  // CommonJS dependencies (pg, ajv, …) call require(); an ES module has none of its
  // own. Every chunk gets one, made on its first call: most chunks never call it.
  banner: {
    js: "import { createRequire as __abpCreateRequire } from 'node:module'; let __abpRequire; const require = (id) => (__abpRequire ??= __abpCreateRequire(import.meta.url))(id);",
  },
  plugins: [zodWithoutLocales],
  logLevel: 'warning',
  legalComments: 'none',
  minifyWhitespace: true,
  minifySyntax: true,
});
