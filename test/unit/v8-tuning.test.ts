import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

/*
 * holdOptimizingCompiler sets V8 flags at run time, which V8 does not promise to
 * honour: this runs it in a real node with natives syntax and asks V8 itself.
 * A function is asked to be optimized on its next call, deterministically.
 */
const TIERING = pathToFileURL(join(ROOT, 'dist', 'src', 'cli', 'v8-tuning.js')).href;
const NEVER_OPTIMIZE = 1 << 1;
const TURBOFANNED = 1 << 6;

function optimizationStatuses(flags: string[] = [], env: Record<string, string> = {}): { held: number; released: number; fresh: number } {
  const script = `
    const { holdOptimizingCompiler } = await import(${JSON.stringify(TIERING)});
    const optimized = (fn) => { %PrepareFunctionForOptimization(fn); fn(1); fn(2); %OptimizeFunctionOnNextCall(fn); fn(3); return %GetOptimizationStatus(fn); };
    const release = holdOptimizingCompiler();
    function a(x) { return x * 2 + 1; }
    const held = optimized(a);
    release();
    release();
    const released = optimized(a);
    function b(x) { return x * 3 + 1; }
    console.log(JSON.stringify({ held, released, fresh: optimized(b) }));
  `;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', ...flags, '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, ...env } });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe('holdOptimizingCompiler', () => {
  it('keeps TurboFan off until released, then optimizes as usual, the functions that ran meanwhile too', () => {
    const s = optimizationStatuses();
    expect(s.held & TURBOFANNED).toBe(0);
    expect(s.held & NEVER_OPTIMIZE).toBe(NEVER_OPTIMIZE);
    expect(s.released & TURBOFANNED).toBe(TURBOFANNED);
    expect(s.fresh & TURBOFANNED).toBe(TURBOFANNED);
  });

  it('leaves a process started with its own choice of tiers as it is', () => {
    const s = optimizationStatuses(['--no-opt']);
    // --no-opt stays in force after release: nothing is optimized.
    expect(s.released & TURBOFANNED).toBe(0);
    expect(s.fresh & TURBOFANNED).toBe(0);
    const viaEnv = optimizationStatuses([], { NODE_OPTIONS: '--jitless' });
    expect(viaEnv.fresh & TURBOFANNED).toBe(0);
  });
});
