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

/**
 * The MCP SDK's server imports its Ajv-based JSON Schema validator for its
 * default, which a server given its own validator never makes; bundled, Ajv and
 * ajv-formats (~450 KB of source) were parsed and run by every `abp mcp` at
 * start-up. abp always gives its own (src/mcp/server.ts, which loads the SDK's
 * validator from node_modules on first use), so that import resolves to a class
 * that says so if it is ever made.
 */
const sdkDefaultValidatorLeftOut: Plugin = {
  name: 'sdk-default-validator-left-out',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/validation\/ajv-provider\.js$/ }, (args) =>
      /[\\/]@modelcontextprotocol[\\/]sdk[\\/]dist[\\/]esm[\\/]server[\\/]/.test(args.importer) ? { path: 'sdk-ajv-provider', namespace: 'abp-sdk-validator' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'abp-sdk-validator' }, () => ({
      contents: "export class AjvJsonSchemaValidator { constructor() { throw new Error('abp gives the MCP server its own JSON Schema validator (src/mcp/server.ts)'); } }",
      loader: 'js',
    }));
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
  plugins: [zodWithoutLocales, sdkDefaultValidatorLeftOut],
  logLevel: 'warning',
  legalComments: 'none',
  minifyWhitespace: true,
  minifySyntax: true,
});
