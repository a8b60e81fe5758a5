import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import type { UnitInput, RunContext } from '../../src/contracts/worker.js';
import { groupAlive } from '../../src/util/process-group.js';
import { shellWorker } from '../../workers/shell.js';
import { ROOT, sleep } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'abp-shell-'));
afterAll(async () => {
  await shellWorker.close?.();
  rmSync(dir, { recursive: true, force: true });
});

function unit(item: Record<string, unknown> = { id: '1' }): UnitInput {
  return { unit_id: 7, job_id: 3, job_name: 'j', attempt: 1, item, prompt: 'the prompt', work_dir: dir, output_schema: null };
}

function ctx(signal = new AbortController().signal, pids: number[] = []): RunContext {
  return { signal, onProcess: (pid) => pids.push(pid), onEvent: () => undefined } as unknown as RunContext;
}

/** Whether a process group is gone within `ms` (its last members may take a moment to be reaped). */
async function goneWithin(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(50);
  return !groupAlive(pgid);
}

const config = (c: Record<string, unknown>) => shellWorker.configSchema.parse(c);

describe('shell worker (through its fork servers)', () => {
  it('returns stdout without its final newline, fills placeholders in args, env and stdin, and runs in the work dir', async () => {
    const cfg = config({ command: 'sh', args: ['-c', 'printf "%s|%s|%s|" "$1" "$GREETING" "$(pwd)"; cat', 'sh', '{{item.id}}'], env: { GREETING: 'hi {{item.id}}' }, stdin: '{{prompt}}\n' });
    const pids: number[] = [];
    const out = await shellWorker.run(unit({ id: 'x7' }), cfg, ctx(undefined, pids));
    expect(out).toMatchObject({ status: 'succeeded', exit_code: 0, output: `x7|hi x7|${dir}|the prompt` });
    expect(pids).toHaveLength(1);
  });

  it('a non-zero exit fails the attempt (retryable) with the exit code and the tail of stderr', async () => {
    const out = await shellWorker.run(unit(), config({ command: 'sh', args: ['-c', 'echo partial; echo first >&2; echo last words >&2; exit 3'] }), ctx());
    expect(out).toMatchObject({ status: 'failed', kind: 'retryable', exit_code: 3, output: 'partial', error: 'exit code 3: first | last words' });
  });

  it('a command that does not exist fails for good, naming it', async () => {
    const out = await shellWorker.run(unit(), config({ command: 'abp-no-such-command' }), ctx());
    expect(out).toMatchObject({ status: 'failed', kind: 'permanent', error: 'command not found: abp-no-such-command' });
  });

  it('stdout past max_output_bytes kills the process and fails for good', async () => {
    const out = await shellWorker.run(unit(), config({ command: 'sh', args: ['-c', 'head -c 5000000 /dev/zero; sleep 30'], max_output_bytes: 100_000 }), ctx());
    expect(out).toMatchObject({ status: 'failed', kind: 'permanent', error: 'stdout exceeded max_output_bytes (100000)' });
    expect(out.duration_ms).toBeLessThan(20_000);
  });

  it('an abort (timeout) kills the whole process group, descendants included', async () => {
    const controller = new AbortController();
    const pids: number[] = [];
    const running = shellWorker.run(unit(), config({ command: 'sh', args: ['-c', 'sleep 60 & sleep 60; wait'] }), ctx(controller.signal, pids));
    while (pids.length === 0) await sleep(20);
    controller.abort('timeout');
    const out = await running;
    expect(out.status).toBe('timed_out');
    expect(await goneWithin(pids[0] as number, 10_000)).toBe(true);
  });

  it('commands started for a process that is SIGKILLed die with it', async () => {
    // A separate Node process runs a unit through its own fork servers, reports the group, then is killed.
    const script = `
      import { shellWorker } from ${JSON.stringify(join(ROOT, 'dist', 'workers', 'shell.js'))};
      const cfg = shellWorker.configSchema.parse({ command: 'sh', args: ['-c', 'sleep 60 & sleep 60; wait'] });
      const ctx = { signal: new AbortController().signal, onProcess: (pid) => console.log(pid), onEvent: () => {} };
      await shellWorker.run({ unit_id: 1, job_id: 1, job_name: 'j', attempt: 1, item: {}, prompt: '', work_dir: ${JSON.stringify(dir)}, output_schema: null }, cfg, ctx);
    `;
    const owner = execa(process.execPath, ['--input-type=module', '-e', script], { reject: false });
    const pid = await new Promise<number>((resolve) => owner.stdout?.once('data', (d) => resolve(Number(String(d).trim()))));
    expect(groupAlive(pid)).toBe(true);
    owner.kill('SIGKILL');
    await owner;
    expect(await goneWithin(pid, 10_000)).toBe(true);
  });
});
