import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { AbpError } from '../src/domain/errors.js';

/*
 * The confinement of approved dynamic code, enforced by the kernel and by Node's
 * runtime rather than by the environment the code is given:
 *
 * - unshare (util-linux) gives the code's process new network, PID, mount and IPC
 *   namespaces (and, when abp is not root, a user namespace to make them in). The
 *   network namespace has only a loopback interface, and it is down: no socket
 *   reaches anything, abp's own loopback servers included. The code's Node is
 *   PID 1 of its PID namespace, so /proc shows only its own processes (not abp's
 *   environ), and when it exits the kernel kills whatever is left in there:
 *   nothing it starts outlives it, whatever setsid or detaching it tries.
 * - In the mount namespace a shell, still privileged there, hides what the code
 *   must not reach behind empty read-only tmpfs mounts (abp's home, the user's
 *   home, the database's folder, /run's sockets, /var/tmp, /dev/shm), puts a fresh
 *   tmpfs of its own on /tmp as the code's scratch folder (the only place it can
 *   write, of a bounded size, gone with the namespace), and binds the node binary
 *   at /run/node so that hiding a home never hides the runtime (nvm).
 * - setpriv (util-linux) then drops every capability for good (empty bounding set,
 *   no_new_privs) and, when abp runs as root, becomes uid/gid 65534 (nobody), so
 *   file permissions keep the code out of root's files.
 * - Node's permission model (--permission, --experimental-permission on Node 20)
 *   lets the code read and write /tmp only, and refuses child processes, worker
 *   threads, native addons and WASI.
 *
 * Whether all this works here is tried once per process (confinement()): where it
 * does not, dynamic code does not run, and the error says what is missing.
 */

/** The code's scratch folder as the code sees it: its cwd, HOME and TMPDIR. */
export const SCRATCH = '/tmp';
/** Where the code and its context are, inside the confinement. */
export const CODE_FILE = `${SCRATCH}/enumerate.mjs`;
export const CONTEXT_FILE = `${SCRATCH}/context.json`;

/** The unprivileged user the code runs as when abp runs as root. */
export const NOBODY = 65534;

/** Printed by the setup shell when it fails, so the error can say the code never ran. */
export const SETUP_FAILED = 'abp-confine: the confinement could not be set up';

export interface Confinement {
  /** root: abp is root; the code runs as uid 65534. user: a user namespace of abp's own user, with no capabilities in it. */
  mode: 'root' | 'user';
  unshare: string;
  setpriv: string;
  mount: string;
  /** Node's flags that turn on its permission model and keep its warning out of the code's output. */
  nodeFlags: string[];
}

/**
 * Runs as PID 1 of the new namespaces, privileged inside them only:
 *   $1 code file, $2 context file (on the host), $3 node binary, $4 scratch MiB,
 *   $5 uid to become ('' = stay in the user namespace), $6 setpriv, $7 mount,
 *   then the folders to hide, then --, then node's arguments.
 * The code and context are opened before /tmp is replaced (they may live there).
 */
const SETUP = `
set -eu
trap 'echo "${SETUP_FAILED}" >&2' EXIT
code=$1 context=$2 node=$3 size=$4 uid=$5 setpriv=$6 mount=$7
shift 7
umask 077
exec 4<"$code" 5<"$context"
"$mount" -n -t tmpfs -o size=1m,mode=0755,nosuid,nodev abp-run /run
: > /run/node
"$mount" -n --bind "$node" /run/node
"$mount" -n -o remount,bind,ro /run/node
while [ "$1" != -- ]; do
  if [ -d "$1" ]; then "$mount" -n -t tmpfs -o ro,size=4k,mode=0,nosuid,nodev,noexec abp-hidden "$1"; fi
  shift
done
shift
"$mount" -n -o remount,bind,ro,nosuid,nodev /run
"$mount" -n -t tmpfs -o "size=\${size}m,mode=0700,nosuid,nodev\${uid:+,uid=$uid,gid=$uid}" abp-scratch /tmp
cat <&4 > /tmp/enumerate.mjs
cat <&5 > /tmp/context.json
exec 4<&- 5<&-
if [ -n "$uid" ]; then chown "$uid:$uid" /tmp/enumerate.mjs /tmp/context.json; fi
cd /tmp
unset PWD OLDPWD
exec "$setpriv" \${uid:+--reuid=$uid --regid=$uid --clear-groups} --bounding-set=-all --inh-caps=-all --no-new-privs -- /run/node "$@"
`;

/** The folders the setup and Node need: never hidden, nor any folder above them. */
const NEEDED = ['/usr', '/usr/bin', '/usr/sbin', '/bin', '/sbin', '/etc', '/proc', '/dev', '/sys', '/run', '/tmp'];
/** Trees nothing inside of which is hidden: the shared libraries Node loads, and the kernel's own file systems. */
const SYSTEM_TREES = ['/lib', '/lib32', '/lib64', '/libx32', '/usr/lib', '/usr/lib32', '/usr/lib64', '/usr/libx32', '/proc', '/sys', '/dev'];
/** Shared places that are hidden although they are inside a system tree. */
const SHARED = ['/var/tmp', '/dev/shm', '/var/run'];

const within = (path: string, tree: string) => path === tree || path.startsWith(`${tree}/`);

/**
 * The folders to hide from the code: the shared writable places and sockets, abp's
 * own (`privatePaths`: its home, its database's folder), and the home of the user
 * abp runs as. Paths that do not exist, or that hold what the setup needs, are left out.
 */
export function foldersToHide(c: Confinement, privatePaths: readonly string[] = []): string[] {
  const needed = [...NEEDED, ...SYSTEM_TREES, dirname(c.setpriv), dirname(c.mount)];
  const shared = new Set(SHARED.map((p) => realOr(p)));
  const candidates = [...SHARED, process.env.HOME, homedir(), process.env.ABP_HOME, ...privatePaths];
  const hide = new Set<string>();
  for (const path of candidates) {
    if (!path) continue;
    let real: string;
    try {
      real = realpathSync(path);
      if (!statSync(real).isDirectory()) continue;
    } catch {
      continue;
    }
    // /tmp and /run are replaced whole; a folder the setup or Node needs, or one above it, cannot be hidden.
    if (within(real, '/tmp') || within(real, '/run')) continue;
    if (real === '/' || needed.some((n) => within(n, real))) continue;
    if (!shared.has(real) && SYSTEM_TREES.some((tree) => within(real, tree))) continue;
    hide.add(real);
  }
  return [...hide];
}

function realOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

export interface ConfinedRun {
  /** The code and context files on the host (read once, before /tmp is replaced). */
  codeFile: string;
  contextFile: string;
  /** The size of the code's /tmp. */
  scratchMb: number;
  /** RLIMIT_DATA for the whole process, in KiB (ulimit -d): it survives setpriv, and the code cannot raise it. */
  dataKb: number;
  hide: string[];
  /** Node's arguments after the permission flags. */
  nodeArgs: string[];
  /** Extra Node flags; tests only, to show what the kernel alone enforces. */
  extraNodeFlags?: string[];
}

/** The command (for spawn with a shell) that runs node confined. */
export function confinedCommand(c: Confinement, run: ConfinedRun): { file: string; args: string[] } {
  const ns = ['--net', '--pid', '--fork', '--kill-child', '--mount-proc', '--ipc', ...(c.mode === 'user' ? ['--user', '--map-root-user'] : [])];
  const node = [
    ...c.nodeFlags,
    `--allow-fs-read=${SCRATCH}/`,
    `--allow-fs-write=${SCRATCH}/`,
    ...(run.extraNodeFlags ?? []),
    ...run.nodeArgs,
  ];
  return {
    file: '/bin/sh',
    args: [
      '-c',
      `ulimit -d ${run.dataKb} 2>/dev/null; exec "$@"`,
      'abp-dynamic',
      c.unshare,
      ...ns,
      '--',
      '/bin/sh',
      '-c',
      SETUP,
      'abp-confine',
      run.codeFile,
      run.contextFile,
      process.execPath,
      String(run.scratchMb),
      c.mode === 'root' ? String(NOBODY) : '',
      c.setpriv,
      c.mount,
      ...run.hide,
      '--',
      ...node,
    ],
  };
}

/** The child's whole environment: enough to run Node, and nothing that could be a secret. */
export function confinedEnv(): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: SCRATCH,
    TMPDIR: SCRATCH,
    LANG: 'C.UTF-8',
    TZ: process.env.TZ ?? 'UTC',
  };
}

function unavailable(reason: string): AbpError {
  return new AbpError(
    'enumeration_failed',
    'dynamic code runs only confined, and it cannot be confined here, so it was not run: it needs Linux network, PID and mount namespaces ' +
      '(and user namespaces when abp does not run as root), made with unshare and setpriv from util-linux, and Node’s permission model; ' +
      `here: ${reason}`,
  );
}

function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/')), '/usr/bin', '/bin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** What this machine offers, before trying it; throws what is missing. */
function plan(): Confinement {
  if (process.platform !== 'linux') throw unavailable(`this is ${process.platform}, not Linux`);
  const flags = process.allowedNodeEnvironmentFlags;
  const permission = flags.has('--permission') ? '--permission' : flags.has('--experimental-permission') ? '--experimental-permission' : undefined;
  if (!permission) throw unavailable(`Node ${process.version} has no permission model (--permission; Node 20 or later)`);
  const tools = { unshare: which('unshare'), setpriv: which('setpriv'), mount: which('mount') };
  const missing = Object.entries(tools).filter(([, path]) => !path).map(([name]) => name);
  if (missing.length) throw unavailable(`${missing.join(' and ')} not found in PATH, /usr/bin, /bin, /usr/sbin or /sbin (util-linux)`);
  return {
    mode: process.getuid?.() === 0 ? 'root' : 'user',
    unshare: tools.unshare as string,
    setpriv: tools.setpriv as string,
    mount: tools.mount as string,
    nodeFlags: [permission, '--no-addons', flags.has('--disable-warning') ? '--disable-warning=ExperimentalWarning' : '--no-warnings'],
  };
}

/** What the probe's Node reports about itself from inside the confinement. */
const PROBE_SOURCE = `const os = require('node:os');
process.stdout.write(JSON.stringify({
  pid: process.pid,
  uid: process.getuid(),
  child: process.permission.has('child'),
  read: process.permission.has('fs.read', '/etc/hostname'),
  write: process.permission.has('fs.write', '/tmp/x'),
  external: Object.values(os.networkInterfaces()).flat().filter((i) => !i.internal).length,
}));`;

/** Runs the probe: a Node that must find itself PID 1, unprivileged, without child processes, without a network. */
async function tryIt(c: Confinement): Promise<Confinement> {
  const dir = mkdtempSync(join(tmpdir(), 'abp-confine-probe-'));
  try {
    writeFileSync(join(dir, 'code'), '');
    writeFileSync(join(dir, 'context'), '{}');
    const { file, args } = confinedCommand(c, {
      codeFile: join(dir, 'code'),
      contextFile: join(dir, 'context'),
      scratchMb: 1,
      dataKb: 1024 * 1024,
      hide: foldersToHide(c),
      nodeArgs: ['-e', PROBE_SOURCE],
    });
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
      const child = spawn(file, args, { cwd: dir, env: confinedEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let [out, err] = ['', ''];
      child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
      child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
      const timer = setTimeout(() => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }, 15_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        done({ code: null, stdout: out, stderr: `${err}${e.message}` });
      });
      child.on('close', (exit) => {
        clearTimeout(timer);
        done({ code: exit, stdout: out, stderr: err });
      });
    });
    const said = stderr
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && l !== SETUP_FAILED && !/dmesg\(1\)/.test(l))
      .join('; ');
    if (code !== 0) throw unavailable(said || `the probe exited with code ${code}`);
    let seen: { pid?: number; uid?: number; child?: boolean; read?: boolean; write?: boolean; external?: number };
    try {
      seen = JSON.parse(stdout);
    } catch {
      throw unavailable(`the probe said ${JSON.stringify(stdout.slice(0, 200))}${said ? ` (${said})` : ''}`);
    }
    const wrong = [
      seen.pid !== 1 && `its process is pid ${seen.pid}, not 1 of its own PID namespace`,
      c.mode === 'root' && seen.uid !== NOBODY && `it runs as uid ${seen.uid}, not ${NOBODY}`,
      seen.child !== false && 'Node allows it child processes',
      seen.read !== false && 'Node lets it read outside its scratch folder',
      seen.write !== true && 'Node does not let it write its scratch folder',
      seen.external !== 0 && `it sees ${seen.external} network interfaces besides loopback`,
    ].filter(Boolean);
    if (wrong.length) throw unavailable(wrong.join('; '));
    return c;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let probed: Promise<Confinement> | undefined;

/**
 * How to confine dynamic code on this machine, tried once per process (the answer,
 * or the error, is kept). Rejects with an AbpError that names what is missing.
 */
export function confinement(): Promise<Confinement> {
  probed ??= (async () => tryIt(plan()))();
  return probed;
}
