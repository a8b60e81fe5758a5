/**
 * The program the dynamic enumerator's child process runs (node --input-type=module -e).
 * It imports the user's module, calls its default export with { limit, context } (the
 * job's enumerator_config.context, {} when it has none), and writes each item as
 * one JSON line on fd 3, honouring backpressure. fd 3 keeps the protocol apart from
 * anything the user's code prints on stdout. The last line says how it ended.
 */
export const RUNNER_SOURCE = String.raw`
import { createWriteStream, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const out = createWriteStream('', { fd: 3 });
const send = (msg) => new Promise((ok) => { if (out.write(JSON.stringify(msg) + '\n')) ok(); else out.once('drain', ok); });
const finish = (msg, code) => out.end(JSON.stringify(msg) + '\n', () => process.exit(code));
const [file, limitArg, contextFile] = process.argv.slice(1);
const limit = limitArg ? Number(limitArg) : undefined;
const context = JSON.parse(readFileSync(contextFile, 'utf8'));
let count = 0;
try {
  const mod = await import(pathToFileURL(file).href);
  const fn = mod.default;
  if (typeof fn !== 'function') {
    finish({ error: 'the code must export default a function: export default async function* enumerate(ctx) { ... }, or one that returns an array' }, 1);
  } else {
    let result = fn(Object.freeze({ limit, context }));
    if (result && typeof result.then === 'function') result = await result;
    if (result === null || typeof result !== 'object' || (!(Symbol.asyncIterator in result) && !(Symbol.iterator in result))) {
      finish({ error: 'the default export returned ' + (result === null ? 'null' : typeof result) + '; return an array or yield items' }, 1);
    } else {
      for await (const item of result) {
        const line = JSON.stringify(item);
        if (line === undefined) throw new Error('item ' + count + ' is ' + typeof item + ', which is not JSON');
        count++;
        await send({ item: JSON.parse(line) });
        if (limit !== undefined && count >= limit) break;
      }
      finish({ done: count }, 0);
    }
  }
} catch (err) {
  const message = err instanceof Error ? (err.stack || err.message) : String(err);
  finish({ error: message, after: count }, 1);
}
`;
