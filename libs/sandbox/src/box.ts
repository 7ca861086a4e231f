import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, lstatSync, readlinkSync, realpathSync } from "node:fs";
import { chown, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  type BoxCgroup,
  type CgroupKind,
  cgroupOomKilled,
  cgroupPidsLimitHit,
  createCgroup,
  detectCgroup,
  killCgroup,
  removeCgroup,
} from "./cgroup.ts";

/** Resource limits of one box. Absent = unlimited. */
export interface BoxLimits {
  /** Memory of all the box's processes together, in MiB (cgroup memory.max / memory.limit_in_bytes). */
  memoryMb?: number;
  /** CPU time as a number of cores (cgroup cpu.max / cfs quota); fractional allowed. */
  cpuCores?: number;
  /** Most processes and threads at once (cgroup pids.max). */
  pidsMax?: number;
}

/** A host path made visible inside the box at `path`; read-only unless `writable`. */
export interface BoxMount {
  host: string;
  path: string;
  writable?: boolean;
}

/** Options of {@link createBox}. */
export interface BoxOptions {
  /** Unique id, `[a-z0-9-]`, used for the cgroup name and logs. */
  id: string;
  /**
   * Host directory owned by the box (its `home/` and `tmp/` live here); removed by `destroy()`. Its parents
   * must be traversable by the box's unprivileged uid (e.g. mode 0711), as must every mount source.
   */
  dir: string;
  /** Extra mounts on top of the system base (read-only /usr, /etc, /bin, /lib*, the Node install). */
  mounts: BoxMount[];
  limits: BoxLimits;
  /** `bwrap` (the isolated default) or `unsafe` (a plain child process; only by explicit choice). */
  isolation: "bwrap" | "unsafe";
}

/** Options of one {@link Box.exec}. */
export interface BoxExecOptions {
  argv: string[];
  /** Working directory, as seen inside the box. */
  cwd: string;
  /** The complete environment (nothing is inherited; PATH defaults to the box's). */
  env: Record<string, string>;
  /** `none`: loopback only (default); `host`: the host's network (dependency installs only). */
  network?: "none" | "host";
  /** Default `ignore`. */
  stdin?: "pipe" | "ignore";
}

/** A set of isolated processes sharing mounts and limits. */
export interface Box {
  readonly id: string;
  /** How the box isolates (`bwrap` or `unsafe`) and how it limits (`cgroup2`, `cgroup1`, `rlimit`, `none`). */
  readonly isolation: "bwrap" | "unsafe";
  readonly limiter: "cgroup2" | "cgroup1" | "rlimit" | "none";
  /** Host uid/gid the box's processes run as (an unprivileged id when the caller is root, else the caller's). */
  readonly uid: number;
  readonly gid: number;
  /** Directories of the box's cgroup(s) on the host (empty without a cgroup), for orphan reaping. */
  readonly cgroupDirs: string[];
  /** The host path a path inside the box maps to through its mounts, or undefined when none covers it. */
  hostPath(inside: string): string | undefined;
  /** Starts a process in the box (stdout and stderr piped). */
  exec(opts: BoxExecOptions): ChildProcess;
  /** SIGKILLs every process of the box. */
  killAll(): Promise<void>;
  /** True when the kernel killed a process of the box for its memory limit. */
  oomKilled(): Promise<boolean>;
  /** True when a fork in the box was refused for its process limit. */
  pidsLimitHit(): Promise<boolean>;
  /** Kills everything, removes the cgroup and `dir`. Idempotent. */
  destroy(): Promise<void>;
}

/** Thrown when the isolated box cannot be set up on this host (bubblewrap missing or refused). */
export class IsolationUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "IsolationUnavailableError";
  }
}

/** uid/gid the processes of a box see for themselves (inside its user namespace). */
export const BOX_INNER_UID = 1000;
/** HOME inside a box: an empty directory private to the box. */
export const BOX_HOME = "/home/sandbox";
/** First host uid handed to boxes when the caller is root (one uid per live box, from a range of 4096). */
export const BOX_UID_BASE = 200_000;
const BOX_UID_RANGE = 4096;

/** What this host offers for boxes; probed once per process by {@link probeIsolation}. */
export interface IsolationProbe {
  /** Absolute path of a working `bwrap`, or undefined. */
  bwrap?: string;
  /** Why bubblewrap is not usable, when it is not. */
  bwrapProblem?: string;
  /** `setpriv` (util-linux), used to drop from root to the box's uid. */
  setpriv?: string;
  prlimit?: string;
  cgroup: CgroupKind;
  root: boolean;
}

let probed: Promise<IsolationProbe> | undefined;

function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/bin", "/usr/sbin", "/bin", "/sbin"])) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/**
 * Probes (once per process) what boxes can use here: a `bwrap` that really creates a sandbox with every
 * namespace unshared (a trial run of `true`), `setpriv` and `prlimit`, and the cgroup interface
 * ({@link detectCgroup}). Never throws.
 */
export function probeIsolation(): Promise<IsolationProbe> {
  probed ??= (async () => {
    const root = process.getuid?.() === 0;
    const cgroup = root || process.env.SANDBOX_CGROUP_ROOT ? await detectCgroup() : "none";
    const probe: IsolationProbe = { cgroup, root };
    const setpriv = which("setpriv");
    const prlimit = which("prlimit");
    if (setpriv) probe.setpriv = setpriv;
    if (prlimit) probe.prlimit = prlimit;
    const bwrap = which("bwrap");
    if (!bwrap) {
      probe.bwrapProblem = "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)";
      return probe;
    }
    if (root && !setpriv) {
      probe.bwrapProblem = "setpriv (util-linux) is missing: boxes cannot drop root";
      return probe;
    }
    try {
      const argv = [bwrap, ...systemArgs(), "--unshare-all", "--unshare-user", "--die-with-parent", "true"];
      const cmd = root ? [setpriv!, ...dropArgs(BOX_UID_BASE, BOX_UID_BASE), ...argv] : argv;
      execFileSync(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 });
      probe.bwrap = bwrap;
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
      probe.bwrapProblem = `bubblewrap cannot create a sandbox here: ${stderr || (err as Error).message} (user namespaces may be disabled: sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces; in a container allow them, e.g. seccomp=unconfined)`;
    }
    return probe;
  })();
  return probed;
}

function dropArgs(uid: number, gid: number): string[] {
  return [`--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", "--"];
}

/** The directory holding the running Node binary, when it is outside /usr (so boxes can run `node`). */
function nodeDir(): string {
  return dirname(realpathSync(process.execPath));
}

/**
 * bwrap arguments of the read-only system base every box gets. `before` goes between the system directories
 * and the Node install: mounts such as the box's own `/tmp` must come first, or they would hide a Node (or a
 * checkout) installed under the host's `/tmp`.
 */
function systemArgs(before: string[] = []): string[] {
  const args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"];
  for (const top of ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]) {
    if (!existsSync(top)) continue;
    const st = lstatSync(top);
    if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(top), top);
    else args.push("--ro-bind", top, top);
  }
  args.push("--proc", "/proc", "--dev", "/dev", ...before);
  const node = nodeDir();
  if (!node.startsWith("/usr/") && !node.startsWith("/bin")) args.push("--ro-bind", node, node);
  return args;
}

const usedUids = new Set<number>();

function allocateUid(): number {
  for (let i = 0; i < BOX_UID_RANGE; i++) {
    const uid = BOX_UID_BASE + ((Date.now() + i) % BOX_UID_RANGE);
    if (!usedUids.has(uid)) {
      usedUids.add(uid);
      return uid;
    }
  }
  throw new Error(`more than ${BOX_UID_RANGE} live boxes in one process`);
}

/**
 * Creates a box: a directory (`dir`, with `home/` and `tmp/`), its cgroup (memory, pids, CPU limits; when
 * the host has a writable cgroup hierarchy) and, per `exec`, a process isolated by bubblewrap:
 * every namespace unshared (mount, PID, IPC, UTS, network, user, cgroup), a tmpfs root with the system
 * read-only (/usr, /etc, /bin, /lib*, the Node install), `dir/tmp` as `/tmp`, `dir/home` as an empty
 * `HOME` (`/home/sandbox`), the given mounts, a private `/proc` (no host processes), uid 1000 inside, and —
 * when the caller is root — an unprivileged host uid outside (`BOX_UID_BASE` + n), so files the box writes
 * and processes it runs belong to nobody else. Network is loopback only unless an exec asks for `host`.
 * Without a cgroup, limits fall back to rlimits through `prlimit` (processes and data size; CPU is not
 * limited then). `isolation: "unsafe"` runs plain child processes (own process group, host paths).
 * @throws IsolationUnavailableError when `bwrap` isolation is asked for and cannot work here.
 */
export async function createBox(options: BoxOptions): Promise<Box> {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(options.id)) throw new Error(`invalid box id ${options.id}`);
  const probe = await probeIsolation();
  if (options.isolation === "bwrap" && !probe.bwrap) {
    throw new IsolationUnavailableError(probe.bwrapProblem ?? "bubblewrap is not usable");
  }
  const home = join(options.dir, "home");
  const tmp = join(options.dir, "tmp");
  await mkdir(home, { recursive: true });
  await mkdir(tmp, { recursive: true });
  const bwrap = options.isolation === "bwrap";
  const uid = bwrap && probe.root ? allocateUid() : (process.getuid?.() ?? 0);
  const gid = bwrap && probe.root ? uid : (process.getgid?.() ?? 0);
  if (bwrap && probe.root) {
    await chown(options.dir, uid, gid);
    await chown(home, uid, gid);
    await chown(tmp, uid, gid);
  }
  let cgroup: BoxCgroup | undefined;
  const wantsLimits = Object.values(options.limits).some((v) => v !== undefined);
  if (bwrap && wantsLimits && probe.cgroup !== "none") {
    cgroup = await createCgroup(probe.cgroup, `box-${options.id}`, options.limits);
  }
  const limiter: Box["limiter"] = cgroup
    ? cgroup.kind
    : bwrap && wantsLimits && probe.prlimit
      ? "rlimit"
      : "none";
  const mounts = [...options.mounts].sort((a, b) => a.path.length - b.path.length);
  const children = new Set<ChildProcess>();
  let destroyed = false;

  const hostPath = (inside: string): string | undefined => {
    if (!bwrap) return inside;
    const table = [...mounts, { host: home, path: BOX_HOME }, { host: tmp, path: "/tmp" }].sort(
      (a, b) => b.path.length - a.path.length,
    );
    for (const m of table) {
      if (inside === m.path) return m.host;
      if (inside.startsWith(`${m.path}/`)) return join(m.host, inside.slice(m.path.length + 1));
    }
    return undefined;
  };

  const exec = (o: BoxExecOptions): ChildProcess => {
    if (destroyed) throw new Error(`box ${options.id} is destroyed`);
    const path = o.env.PATH ?? `${nodeDir()}:/usr/local/bin:/usr/bin:/bin`;
    const env = { ...o.env, PATH: path };
    let argv: string[];
    let cwd: string | undefined;
    if (!bwrap) {
      argv = o.argv;
      cwd = o.cwd;
    } else {
      argv = [probe.bwrap!, ...systemArgs(["--bind", tmp, "/tmp", "--bind", home, BOX_HOME])];
      argv.push("--unshare-all", "--unshare-user");
      if (o.network === "host") argv.push("--share-net");
      argv.push("--die-with-parent", "--new-session", "--hostname", "sandbox");
      argv.push("--uid", String(BOX_INNER_UID), "--gid", String(BOX_INNER_UID));
      for (const m of mounts) argv.push(m.writable ? "--bind" : "--ro-bind", m.host, m.path);
      // The tmpfs root bubblewrap builds the sandbox on becomes read-only too: only the binds marked writable
      // (and /tmp, HOME) can be written.
      argv.push("--remount-ro", "/");
      argv.push("--chdir", o.cwd, "--", ...o.argv);
      if (limiter === "rlimit") {
        const lim: string[] = [];
        if (options.limits.pidsMax !== undefined) lim.push(`--nproc=${options.limits.pidsMax}`);
        if (options.limits.memoryMb !== undefined)
          lim.push(`--data=${options.limits.memoryMb * 1024 * 1024}`);
        argv = [probe.prlimit!, ...lim, "--", ...argv];
      }
      if (probe.root) argv = [probe.setpriv!, ...dropArgs(uid, gid), ...argv];
      if (cgroup) {
        // The wrapper joins the cgroup(s) before it becomes the sandbox, so no process of the box ever
        // runs outside its limits.
        const join =
          'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';
        argv = ["/bin/sh", "-c", join, "sh", String(cgroup.procsFiles.length), ...cgroup.procsFiles, ...argv];
      }
    }
    const child = spawn(argv[0]!, argv.slice(1), {
      ...(cwd !== undefined ? { cwd } : {}),
      env,
      detached: !bwrap,
      stdio: [o.stdin ?? "ignore", "pipe", "pipe"],
    });
    children.add(child);
    child.once("exit", () => children.delete(child));
    child.once("error", () => children.delete(child));
    return child;
  };

  const killAll = async (): Promise<void> => {
    if (cgroup) await killCgroup(cgroup);
    for (const child of children) {
      if (child.pid === undefined) continue;
      try {
        // bwrap: killing it kills its sandbox (--die-with-parent ends the namespace's init, and with it
        // every process of the PID namespace). unsafe: the whole process group.
        process.kill(bwrap ? child.pid : -child.pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  };

  return {
    id: options.id,
    isolation: options.isolation,
    limiter,
    uid,
    gid,
    cgroupDirs: cgroup?.dirs ?? [],
    hostPath,
    exec,
    killAll,
    oomKilled: async () => (cgroup ? cgroupOomKilled(cgroup) : false),
    pidsLimitHit: async () => (cgroup ? cgroupPidsLimitHit(cgroup) : false),
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await killAll();
      if (cgroup) await removeCgroup(cgroup);
      if (bwrap && probe.root) usedUids.delete(uid);
      await rm(options.dir, { recursive: true, force: true });
    },
  };
}

/**
 * Checks that a box's unprivileged uid can read `paths` (bubblewrap mounts them as that uid, so a path
 * under a directory like a 0700 `/root` cannot be mounted). No-op unless boxes drop from root.
 * @throws IsolationUnavailableError naming the first unreadable path and what to do.
 */
export async function assertBoxCanRead(paths: string[]): Promise<void> {
  const probe = await probeIsolation();
  if (!probe.root || !probe.setpriv) return;
  for (const path of paths) {
    try {
      execFileSync(probe.setpriv, [...dropArgs(BOX_UID_BASE, BOX_UID_BASE), "test", "-r", path], {
        stdio: "ignore",
      });
    } catch {
      throw new IsolationUnavailableError(
        `sandboxes run as an unprivileged user and cannot read ${path}: make its directories world-traversable ` +
          "(e.g. chmod o+x on each parent) or install Longshot and Node outside a private home such as /root",
      );
    }
  }
}

/**
 * Gives the tree at `path` to the box's uid (files created by the caller before the box runs, e.g. a
 * clone). No-op when the box runs as the caller. Symlinks are changed themselves, never followed.
 */
export async function chownToBox(box: Box, path: string): Promise<void> {
  if (box.uid === (process.getuid?.() ?? 0)) return;
  await new Promise<void>((resolve, reject) =>
    execFile("chown", ["-R", "-h", `${box.uid}:${box.gid}`, "--", path], (err) =>
      err ? reject(err) : resolve(),
    ),
  );
}
