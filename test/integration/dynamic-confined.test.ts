import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { CODE_FILE, CONTEXT_FILE, confinedCommand, confinedEnv, confinement, foldersToHide } from '../../enumerators/confine.js';
import { RUNNER_SOURCE } from '../../enumerators/dynamic-runner.js';
import { ROOT, Sandbox } from '../helpers/cli.js';

/*
 * Issue 22, class 4: approved dynamic code is confined by the kernel and by Node's
 * runtime, not only by the environment it is given. Each test runs code that tries
 * what a hostile review found it could do (read abp's secrets from /proc and from
 * $ABP_HOME, reach a loopback server, start processes that outlive it, write
 * outside its folder) and reports, as items, what happened to each attempt.
 *
 * - through the real CLI: every attempt fails inside the code, and legitimate work
 *   (items, its context, files in its scratch folder) still works;
 * - the kernel's layer alone (Node's permission model lifted, which only a test can
 *   do): the same attempts fail or find nothing, and the processes it starts die
 *   with it;
 * - as a user who is not root (setpriv to nobody), the user-namespace branch;
 * - where the confinement cannot be made, the code does not run and the error says why.
 */

const SECRETS = {
  ABP_API_KEY: 'abp-confined-secret-7777',
  ANTHROPIC_API_KEY: 'sk-ant-confined-secret-8888',
};
const KEY_FILE_SECRET = 'api-key-file-secret-9999';
const DECOY_SECRET = 'decoy-environ-secret-0000';

/** Each attempt as an item: what was tried, and how it ended (the error's code when it failed). */
const HOSTILE = String.raw`
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import cp from 'node:child_process';
import { Worker } from 'node:worker_threads';
const attempt = async (what, f) => {
  try {
    const value = await f();
    return { what, outcome: 'ok', value: value === undefined ? null : String(value).slice(0, 400) };
  } catch (e) {
    return { what, outcome: 'failed', code: e?.code ?? null, message: String(e?.message ?? e).slice(0, 200) };
  }
};
export default async function* (ctx) {
  const c = ctx.context;
  yield attempt('read /proc/$PPID/environ', () => fs.readFileSync('/proc/' + process.ppid + '/environ', 'utf8'));
  yield attempt('read /proc/1/environ', () => fs.readFileSync('/proc/1/environ', 'utf8'));
  yield attempt('read the decoy process environ', () => fs.readFileSync('/proc/' + c.decoy_pid + '/environ', 'utf8'));
  yield attempt('scan /proc/*/environ for secrets', () => {
    const found = [];
    for (const pid of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      let text = '';
      try { text = fs.readFileSync('/proc/' + pid + '/environ', 'utf8'); } catch { continue; }
      if (c.secrets.some((s) => text.includes(s))) found.push(pid);
    }
    return 'pids with a secret: [' + found.join(',') + ']';
  });
  yield attempt('read $ABP_HOME/api-key', () => fs.readFileSync(c.api_key, 'utf8'));
  yield attempt('read /etc/shadow', () => fs.readFileSync('/etc/shadow', 'utf8').length);
  yield attempt('connect to the loopback server', () => new Promise((ok, fail) => {
    const s = net.connect(c.port, '127.0.0.1');
    s.on('connect', () => { s.end(); ok('connected'); });
    s.on('error', fail);
    setTimeout(() => fail(Object.assign(new Error('no answer in 3 s'), { code: 'TIMEOUT' })), 3000);
  }));
  yield attempt('run id', () => cp.execFileSync('id').toString().trim());
  yield attempt('leave a detached child', () => {
    const child = cp.spawn('sh', ['-c', 'sleep 30; : ' + c.marker], { detached: true, stdio: 'ignore' });
    child.unref();
    return child.pid;
  });
  yield attempt('leave a setsid child', async () => {
    // It says when it runs, so that the item arrives only once it does: the test looks for it then.
    const up = os.tmpdir() + '/setsid-up';
    const child = cp.spawn('setsid', ['sh', '-c', 'echo up > "$0"; sleep 30; : ' + c.marker, up], { stdio: 'ignore' });
    child.unref();
    for (let i = 0; !fs.existsSync(up); i++) {
      if (i > 400) throw new Error('the setsid child never started');
      await new Promise((r) => setTimeout(r, 25));
    }
    return child.pid;
  });
  yield attempt('start a worker thread', () => { new Worker('1', { eval: true }).unref(); return 'started'; });
  yield attempt('write outside its folder', () => fs.writeFileSync(c.outside + '/escaped.txt', 'escaped'));
  yield attempt('write a folder in the host’s /tmp', () => fs.writeFileSync(c.outside_in_tmp + '/escaped.txt', 'escaped'));
  yield attempt('write /var/tmp', () => fs.writeFileSync('/var/tmp/' + c.marker, 'escaped'));
  // What approved code is for: its context, its scratch folder (cwd, TMPDIR), items.
  yield attempt('write and read its scratch folder', () => {
    fs.writeFileSync('notes.txt', 'kept');
    fs.mkdirSync(os.tmpdir() + '/sub', { recursive: true });
    fs.writeFileSync(os.tmpdir() + '/sub/n', String(c.region.length));
    return fs.readFileSync('notes.txt', 'utf8') + ':' + fs.readFileSync(process.env.TMPDIR + '/sub/n', 'utf8') + ':' + process.cwd();
  });
  yield attempt('read its context', () => c.region);
}
`;

/** The attempts by name. */
function byWhat(items: { what: string }[]): Record<string, any> {
  return Object.fromEntries(items.map((i) => [i.what, i]));
}

/** Host processes whose command line holds `marker`. */
function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)) found.push(Number(pid));
    } catch {
      // gone
    }
  }
  return found;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A loopback TCP server in this process that counts the connections it sees. */
async function loopbackServer(): Promise<{ port: number; connections: () => number }> {
  let seen = 0;
  const server: Server = createServer((socket) => {
    seen++;
    socket.destroy();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  cleanups.push(() => new Promise((ok) => server.close(ok)));
  return { port: (server.address() as { port: number }).port, connections: () => seen };
}

/** A process holding a secret in its environment, whose pid the code is told. */
function decoy(): ChildProcess {
  const child = spawn('sleep', ['120'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DECOY: DECOY_SECRET }, stdio: 'ignore' });
  cleanups.push(() => child.kill('SIGKILL'));
  return child;
}

/**
 * The world the hostile code is given: abp with secrets in its environment and in its
 * home (outside /tmp, as ~/.abp would be), a loopback server, a decoy process, and
 * world-writable folders outside the code's own, in /var/tmp and in the host's /tmp.
 */
async function world() {
  const home = mkdtempSync('/var/tmp/abp-confined-home-');
  cleanups.push(() => rmSync(home, { recursive: true, force: true }));
  const sb = new Sandbox({ ...SECRETS, ABP_HOME: home });
  cleanups.push(() => sb.cleanup());
  const apiKey = join(home, 'api-key');
  writeFileSync(apiKey, `${KEY_FILE_SECRET}\n`, { mode: 0o600 });
  // World-writable, so that only the confinement can keep the code out of them.
  const outside = join(home, 'outside');
  const outsideInTmp = sb.path('outside');
  for (const dir of [outside, outsideInTmp]) {
    mkdirSync(dir);
    chmodSync(dir, 0o777);
  }
  chmodSync(home, 0o755);
  const server = await loopbackServer();
  const marker = `abp-confined-marker-${process.pid}-${Date.now()}`;
  cleanups.push(() => {
    for (const pid of processesWith(marker)) process.kill(pid, 'SIGKILL');
    rmSync(`/var/tmp/${marker}`, { force: true });
  });
  const context = {
    decoy_pid: decoy().pid,
    secrets: [...Object.values(SECRETS), KEY_FILE_SECRET, DECOY_SECRET],
    api_key: apiKey,
    port: server.port,
    marker,
    outside,
    outside_in_tmp: outsideInTmp,
    region: 'eu-west',
  };
  return { sb, home, apiKey, outside, outsideInTmp, server, marker, context };
}

describe('approved dynamic code is confined (through the real CLI)', () => {
  it('every escape fails inside the code; its items, context and scratch folder still work', async () => {
    const { sb, outside, outsideInTmp, server, marker, context } = await world();
    const spec = sb.path('spec.json');
    writeFileSync(
      spec,
      JSON.stringify({ name: 'hostile', user_intent: 'x', enumerator_type: 'dynamic', enumerator_config: { code: HOSTILE, context, timeout_seconds: 30 }, worker_type: 'shell', worker_config: { command: 'true' } }),
    );
    const pending = await sb.ok(['create', '--spec', spec]);
    expect(pending.status_reason).toBe('pending_approval');
    const approved = await sb.ok(['approve', String(pending.job_id), '--code-sha256', pending.approval.code_sha256]);
    expect(approved.total).toBe(16);

    const units = await sb.query<{ payload: string }>('select payload from work_units where job_id = ? order by seq', pending.job_id);
    const all = units.map((u) => u.payload).join('\n');
    for (const secret of context.secrets) expect(all).not.toContain(secret);
    const seen = byWhat(units.map((u) => JSON.parse(u.payload)));

    // Node's permission model refuses each of these before the kernel is asked.
    const denied = { outcome: 'failed', code: 'ERR_ACCESS_DENIED' };
    for (const what of [
      'read /proc/$PPID/environ',
      'read /proc/1/environ',
      'read the decoy process environ',
      'scan /proc/*/environ for secrets',
      'read $ABP_HOME/api-key',
      'read /etc/shadow',
      'run id',
      'leave a detached child',
      'leave a setsid child',
      'start a worker thread',
      'write outside its folder',
      'write /var/tmp',
    ]) {
      expect(seen[what], what).toMatchObject(denied);
    }
    // Its /tmp is its own (Node lets it write there), so the host's /tmp is not there to write to.
    expect(seen['write a folder in the host’s /tmp']).toMatchObject({ outcome: 'failed', code: 'ENOENT' });
    // The network namespace has no interface up: not even loopback.
    expect(seen['connect to the loopback server']).toMatchObject({ outcome: 'failed', code: 'ENETUNREACH' });
    expect(server.connections()).toBe(0);

    expect(existsSync(join(outside, 'escaped.txt'))).toBe(false);
    expect(existsSync(join(outsideInTmp, 'escaped.txt'))).toBe(false);
    expect(existsSync(`/var/tmp/${marker}`)).toBe(false);
    expect(processesWith(marker)).toEqual([]);

    expect(seen['write and read its scratch folder']).toMatchObject({ outcome: 'ok', value: 'kept:7:/tmp' });
    expect(seen['read its context']).toMatchObject({ outcome: 'ok', value: 'eu-west' });
  }, 60_000);
});

/** Runs code in the confinement with extra Node flags, reading its items from fd 3 as they come. */
async function runConfined(code: string, context: unknown, privatePaths: string[], extraNodeFlags: string[], onItem: (item: any) => void = () => undefined) {
  const c = await confinement();
  const dir = mkdtempSync(join(tmpdir(), 'abp-confined-test-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'code.mjs'), code);
  writeFileSync(join(dir, 'context.json'), JSON.stringify(context));
  const { file, args } = confinedCommand(c, {
    codeFile: join(dir, 'code.mjs'),
    contextFile: join(dir, 'context.json'),
    scratchMb: 16,
    dataKb: 512 * 1024,
    hide: foldersToHide(c, privatePaths),
    extraNodeFlags,
    nodeArgs: ['--input-type=module', '-e', RUNNER_SOURCE, CODE_FILE, '', CONTEXT_FILE],
  });
  const child = spawn(file, args, { cwd: dir, env: confinedEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  cleanups.push(() => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL');
    } catch {
      // ended
    }
  });
  let output = '';
  child.stdout?.on('data', (b: Buffer) => (output += b));
  child.stderr?.on('data', (b: Buffer) => (output += b));
  const items: any[] = [];
  let ending: any;
  for await (const line of createInterface({ input: child.stdio[3] as Readable })) {
    const msg = JSON.parse(line);
    if ('item' in msg) {
      items.push(msg.item);
      onItem(msg.item);
    } else ending = msg;
  }
  const code_ = await new Promise<number | null>((ok) => (child.exitCode !== null ? ok(child.exitCode) : child.on('close', ok)));
  return { items, ending, exitCode: code_, output, mode: c.mode };
}

describe('the kernel’s layer alone: Node’s permission model lifted (only a test can)', () => {
  it('abp’s processes and secrets are out of sight, there is no network, and nothing it starts outlives it', async () => {
    const { home, outside, outsideInTmp, server, marker, context } = await world();
    const run = await runConfined(HOSTILE, context, [home], ['--allow-fs-read=*', '--allow-fs-write=*', '--allow-child-process', '--allow-worker'], () => undefined);
    expect(run.ending, run.output).toEqual({ done: 16 });
    const seen = byWhat(run.items);
    const root = run.mode === 'root';

    // Its own PID namespace: its parent is not there, PID 1 is itself, and /proc holds only its own processes.
    expect(seen['read /proc/$PPID/environ']).toMatchObject({ outcome: 'failed', code: 'ENOENT' });
    expect(seen['read /proc/1/environ'].outcome).toBe('ok');
    expect(seen['read /proc/1/environ'].value).toContain('PATH=');
    expect(seen['read the decoy process environ']).toMatchObject({ outcome: 'failed', code: 'ENOENT' });
    expect(seen['scan /proc/*/environ for secrets']).toMatchObject({ outcome: 'ok', value: 'pids with a secret: []' });
    // abp's home is hidden behind an empty folder no one may open.
    expect(seen['read $ABP_HOME/api-key']).toMatchObject({ outcome: 'failed', code: 'EACCES' });
    if (root) expect(seen['read /etc/shadow']).toMatchObject({ outcome: 'failed', code: 'EACCES' });
    expect(seen['connect to the loopback server']).toMatchObject({ outcome: 'failed', code: 'ENETUNREACH' });
    expect(server.connections()).toBe(0);
    expect(seen['run id']).toMatchObject({ outcome: 'ok', value: root ? 'uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)' : expect.stringMatching(/^uid=0\(root\)/) });

    // The children started, and were running on the host while the code ran …
    expect(seen['leave a detached child'].outcome).toBe('ok');
    // The attempt waits until the child says it runs: 'ok' means the escape really started.
    expect(seen['leave a setsid child'].outcome).toBe('ok');
    // … and the kernel killed them when the code's PID 1 exited.
    const deadline = Date.now() + 2000;
    while (processesWith(marker).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(processesWith(marker)).toEqual([]);

    // Writes: shared places are hidden behind read-only empty folders, the host's /tmp is replaced by its own.
    expect(seen['write outside its folder']).toMatchObject({ outcome: 'failed', code: 'EACCES' });
    expect(existsSync(join(outside, 'escaped.txt'))).toBe(false);
    expect(seen['write a folder in the host’s /tmp']).toMatchObject({ outcome: 'failed', code: 'ENOENT' });
    expect(existsSync(join(outsideInTmp, 'escaped.txt'))).toBe(false);
    expect(seen['write /var/tmp'].outcome).toBe('failed');
    expect(['EACCES', 'EROFS']).toContain(seen['write /var/tmp'].code);
    expect(existsSync(`/var/tmp/${marker}`)).toBe(false);
    expect(seen['write and read its scratch folder']).toMatchObject({ outcome: 'ok', value: 'kept:7:/tmp' });
  }, 60_000);
});

/** Runs dist's dynamic enumerator in a fresh Node process, as `user` (a uid) or as this user; prints its items, or its error as { error }. */
function runEnumeratorAs(uid: number | undefined, code: string, context: Record<string, unknown>, wrap: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'abp-confined-user-'));
  chmodSync(dir, 0o755);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'run.mjs');
  writeFileSync(
    script,
    `import { approvalSha256, dynamicEnumerator } from ${JSON.stringify(join(ROOT, 'dist', 'enumerators', 'dynamic.js'))};
const cfg = dynamicEnumerator.configSchema.parse({ code: ${JSON.stringify(code)}, context: ${JSON.stringify(context)}, timeout_seconds: 30 });
const ctx = { signal: new AbortController().signal, approvedCodeSha256: approvalSha256(cfg) };
for (let round = 0; round < 2; round++) {
  try {
    for await (const item of dynamicEnumerator.enumerate(cfg, ctx)) console.log(JSON.stringify(item));
  } catch (err) {
    console.log(JSON.stringify({ error: err.message, code: err.code }));
  }
}
`,
  );
  chmodSync(script, 0o644);
  const as = uid === undefined ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--'];
  const argv = [...wrap, ...as, process.execPath, script];
  const r = spawnSync(argv[0] as string, argv.slice(1), { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' }, encoding: 'utf8', timeout: 60_000 });
  return { lines: r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)), stderr: r.stderr, status: r.status };
}

const WHO = `import fs from 'node:fs';
import net from 'node:net';
import cp from 'node:child_process';
const attempt = async (what, f) => { try { return { what, outcome: 'ok', value: String(await f()) }; } catch (e) { return { what, outcome: 'failed', code: e?.code ?? null }; } };
export default async function* (ctx) {
  yield { what: 'who', uid: process.getuid(), pid: process.pid, ppid: process.ppid };
  yield attempt('read /proc/1/environ', () => fs.readFileSync('/proc/1/environ', 'utf8'));
  yield attempt('connect to the loopback server', () => new Promise((ok, fail) => { const s = net.connect(ctx.context.port, '127.0.0.1'); s.on('connect', () => { s.end(); ok('connected'); }); s.on('error', fail); }));
  yield attempt('run id', () => cp.execFileSync('id').toString());
  yield attempt('write and read its scratch folder', () => { fs.writeFileSync('n', 'kept'); return fs.readFileSync('n', 'utf8'); });
}`;

/** Whether uid 65534 can read the checkout (a clone inside a 0700 folder, as mktemp -d makes, it cannot). */
const nobodyReadsCheckout = () =>
  process.getuid?.() === 0 && spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', 'test', '-r', join(ROOT, 'package.json')]).status === 0;

describe.skipIf(!nobodyReadsCheckout())('as a user who is not root (setpriv to nobody): the user-namespace branch', () => {
  it('confines the same way, in a user namespace of its own', async () => {
    const server = await loopbackServer();
    const { lines, stderr } = runEnumeratorAs(65534, WHO, { port: server.port });
    expect(lines.filter((l) => l.error), stderr).toEqual([]);
    const round = lines.slice(0, 5);
    const seen = byWhat(round);
    // Root of its own user namespace (uid 65534 outside), PID 1 of its own PID namespace.
    expect(seen.who).toMatchObject({ uid: 0, pid: 1, ppid: 0 });
    expect(seen['read /proc/1/environ']).toMatchObject({ outcome: 'failed', code: 'ERR_ACCESS_DENIED' });
    expect(seen['connect to the loopback server']).toMatchObject({ outcome: 'failed', code: 'ENETUNREACH' });
    expect(seen['run id']).toMatchObject({ outcome: 'failed', code: 'ERR_ACCESS_DENIED' });
    expect(seen['write and read its scratch folder']).toMatchObject({ outcome: 'ok', value: 'kept' });
    expect(server.connections()).toBe(0);
  }, 60_000);
});

describe.skipIf(process.getuid?.() !== 0)('where the confinement cannot be made, the code does not run', () => {
  it('names what is missing, tries once per process, and never runs the code unconfined', async () => {
    // A mount namespace of this test's own in which unshare fails as it does without namespaces.
    const dir = mkdtempSync(join(tmpdir(), 'abp-no-unshare-'));
    chmodSync(dir, 0o755);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const fake = join(dir, 'unshare');
    const calls = join(dir, 'calls');
    writeFileSync(fake, `#!/bin/sh\necho x >> ${calls}\necho "unshare: unshare failed: Operation not permitted" >&2\nexit 1\n`, { mode: 0o755 });
    const real = spawnSync('sh', ['-c', 'command -v unshare'], { encoding: 'utf8' }).stdout.trim();
    const marker = join(dir, 'ran');
    const code = `import fs from 'node:fs'; export default () => { try { fs.writeFileSync(${JSON.stringify(marker)}, 'ran'); } catch {} return [{ ran: true }]; }`;
    const { lines } = runEnumeratorAs(undefined, code, {}, ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', `mount --bind ${fake} ${real} && exec "$@"`, 'sh']);
    const message =
      'dynamic code runs only confined, and it cannot be confined here, so it was not run: it needs Linux network, PID and mount namespaces ' +
      '(and user namespaces when abp does not run as root), made with unshare and setpriv from util-linux, and Node’s permission model; ' +
      'here: unshare: unshare failed: Operation not permitted';
    expect(lines).toEqual([
      { error: message, code: 'enumeration_failed' },
      { error: message, code: 'enumeration_failed' },
    ]);
    // Tried once for the process's two enumerations; the code never ran.
    expect(readFileSync(calls, 'utf8')).toBe('x\n');
    expect(existsSync(marker)).toBe(false);
  }, 60_000);
});

describe('what is hidden from the code', () => {
  it('abp’s folders, the user’s home and the shared writable places; never a folder the setup or Node needs', async () => {
    const c = await confinement();
    const home = mkdtempSync('/var/tmp/abp-confined-private-');
    cleanups.push(() => rmSync(home, { recursive: true, force: true }));
    const hidden = foldersToHide(c, [home, '/', '/usr', '/usr/lib', '/usr/lib/x86_64-linux-gnu', '/lib', '/etc', '/proc/self', '/dev', join(tmpdir(), 'x'), '/tmp', '/run/user', '/does/not/exist', ROOT]);
    // A checkout under /tmp needs no hiding: the code's /tmp is a fresh tmpfs of its own.
    const rootHidden = realpathSync(ROOT).startsWith('/tmp/') ? [] : [ROOT];
    expect(hidden).toEqual(expect.arrayContaining(['/var/tmp', '/dev/shm', home, ...rootHidden]));
    if (process.env.HOME && existsSync(process.env.HOME) && !['/', '/tmp'].includes(process.env.HOME)) expect(hidden).toContain(process.env.HOME);
    for (const kept of ['/', '/usr', '/usr/lib', '/usr/lib/x86_64-linux-gnu', '/lib', '/etc', '/proc', '/dev', '/tmp', '/run', '/run/user', '/does/not/exist']) expect(hidden).not.toContain(kept);
  });
});
