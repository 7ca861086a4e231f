import type { ChildProcess } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import type { Logger } from "@longshot/log";
import type {
  SandboxBackend,
  SandboxCapabilities,
  SandboxExecOptions,
  SandboxHandle,
  SandboxProcess,
} from "./backend.ts";
import { assertBoxCanRead, BOX_HOME, type Box, chownToBox, createBox } from "./box.ts";
import { cgroupFromDirs, killCgroup, removeCgroup } from "./cgroup.ts";

/** The Longshot checkout this library runs from (worker code, prompts, node_modules). */
const INSTALL_ROOT = resolve(import.meta.dirname, "../../..");
/** Inside path of a local box's workspace (bubblewrap); unsafe-local uses the host path. */
const BOX_WORKSPACE = "/workspace";
/** Parts of the Longshot checkout a box sees, read-only: what the worker needs to run, nothing else. */
const WORKER_PATHS = ["node_modules", "libs", "services/worker", "prompts", "package.json"];

/** Options of {@link createLocalBackend}. */
export interface LocalBackendOptions {
  /** `bwrap`: isolated (the default provider `local`); `unsafe`: plain processes (`unsafe-local`). */
  isolation: "bwrap" | "unsafe";
  /** Where sandbox directories are created; default the OS temp dir. */
  tmpRoot?: string;
  /**
   * Directory recording live sandboxes (`<id>.json`: directory, cgroups, process groups), so that a backend
   * restarted after a crash can reap what its predecessor left ({@link SandboxBackend.reap}).
   */
  registryDir?: string;
  /** The Longshot checkout holding the worker; default the one this library runs from. */
  installRoot?: string;
  log: Logger;
}

interface RegistryRecord {
  dir: string;
  cgroupDirs: string[];
  /**
   * Processes to kill: the bwrap process of each exec (killing it ends its whole sandbox) or, unsafe, each
   * process group leader. `start` is the process start time (field 22 of /proc/<pid>/stat), so a pid the
   * kernel gave to someone else since is never killed.
   */
  procs: Array<{ pid: number; start: string; group: boolean }>;
}

/** Start time of `pid` (clock ticks since boot, /proc/<pid>/stat field 22), or undefined when gone. */
async function startTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
}

/**
 * The local sandbox backend. `bwrap`: every sandbox is a box (see `createBox`): its own mount, PID, IPC, UTS,
 * user and network namespaces, the system read-only, the workspace (`/workspace`) the only writable place
 * besides a private `/tmp` and an empty `HOME`, an unprivileged uid, no network, cgroup limits; the worker
 * code is mounted read-only at its host path. `unsafe`: plain child processes in their own process groups,
 * with the host's filesystem and network — only when chosen explicitly (`SANDBOX_PROVIDER=unsafe-local`).
 * Directory removal after `terminate()` runs in the background (processes are gone first).
 */
export function createLocalBackend(options: LocalBackendOptions): SandboxBackend {
  const root = options.installRoot ?? INSTALL_ROOT;
  const bwrap = options.isolation === "bwrap";
  const capabilities: SandboxCapabilities = {
    isolation: bwrap ? "bwrap" : "none",
    network: bwrap ? "none" : "host",
    limits: bwrap ? ["memoryMb", "cpuCores", "pidsMax"] : [],
    maxRuntimeMs: Number.POSITIVE_INFINITY,
    snapshots: false,
    gpu: false,
  };

  const record = async (id: string, rec: RegistryRecord | undefined): Promise<void> => {
    if (!options.registryDir) return;
    const path = join(options.registryDir, `${id}.json`);
    if (rec === undefined) await rm(path, { force: true });
    else {
      await mkdir(options.registryDir, { recursive: true });
      await writeFile(path, JSON.stringify(rec));
    }
  };

  let readable: Promise<void> | undefined;
  return {
    name: bwrap ? "local" : "unsafe-local",
    capabilities,
    async create(spec) {
      if (bwrap) {
        readable ??= assertBoxCanRead([...WORKER_PATHS.map((p) => join(root, p)), process.execPath]);
        await readable;
      }
      const dir = await mkdtemp(join(options.tmpRoot ?? tmpdir(), `longshot-sandbox-${spec.id}-`));
      // The box's uid must reach its workspace (traverse only: the directory is not listable).
      await chmod(dir, 0o711);
      const work = join(dir, "work");
      await mkdir(work);
      const workspace = bwrap ? BOX_WORKSPACE : work;
      const box = await createBox({
        id: basename(dir)
          .replace(/^longshot-sandbox-/, "")
          .toLowerCase()
          .replace(/[^a-z0-9-]/g, "-"),
        dir: join(dir, "box"),
        mounts: bwrap
          ? [
              { host: work, path: BOX_WORKSPACE, writable: true },
              ...WORKER_PATHS.map((p) => ({ host: join(root, p), path: join(root, p) })),
            ]
          : [],
        limits: bwrap ? spec.limits : {},
        isolation: options.isolation,
      });
      await chownToBox(box, work);
      const procs: RegistryRecord["procs"] = [];
      await record(spec.id, { dir, cgroupDirs: box.cgroupDirs, procs });
      const onProc = async (pid: number) => {
        const start = await startTime(pid);
        if (start === undefined) return;
        procs.push({ pid, start, group: !bwrap });
        await record(spec.id, { dir, cgroupDirs: box.cgroupDirs, procs });
      };
      return localHandle(
        { id: spec.id, box, workspace, root, dir, bwrap, installNetwork: spec.installNetwork === true },
        onProc,
        () => record(spec.id, undefined),
        options.log,
      );
    },
    async reap() {
      if (!options.registryDir) return 0;
      let names: string[];
      try {
        names = (await readdir(options.registryDir)).filter((n) => n.endsWith(".json"));
      } catch {
        return 0;
      }
      for (const name of names) {
        const path = join(options.registryDir, name);
        try {
          const rec = JSON.parse(await readFile(path, "utf8")) as Partial<RegistryRecord>;
          await reapRecord(rec);
        } catch (err) {
          options.log.warn({ err, record: name }, "could not reap a sandbox record");
        } finally {
          await rm(path, { force: true });
        }
      }
      return names.length;
    },
  };
}

async function reapRecord(rec: Partial<RegistryRecord>): Promise<void> {
  for (const p of rec.procs ?? []) {
    if (p.pid <= 1 || (await startTime(p.pid)) !== p.start) continue;
    try {
      process.kill(p.group ? -p.pid : p.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  if (rec.cgroupDirs && rec.cgroupDirs.length > 0) {
    const cg = cgroupFromDirs(rec.cgroupDirs);
    await killCgroup(cg);
    await removeCgroup(cg);
  }
  if (typeof rec.dir === "string" && basename(rec.dir).startsWith("longshot-sandbox-")) {
    await rm(rec.dir, { recursive: true, force: true });
  }
}

interface LocalSandbox {
  id: string;
  box: Box;
  /** Inside path of the workspace. */
  workspace: string;
  /** The Longshot checkout the worker runs from. */
  root: string;
  /** Host directory of the whole sandbox. */
  dir: string;
  bwrap: boolean;
  installNetwork: boolean;
}

function localHandle(
  sb: LocalSandbox,
  onProc: (pid: number) => Promise<void>,
  unregister: () => Promise<void>,
  log: Logger,
): SandboxHandle {
  const { id, box, workspace, root, dir, bwrap, installNetwork } = sb;
  let terminated = false;
  const hostOf = (inside: string): string => {
    const host = box.hostPath(inside);
    if (host === undefined) throw new Error(`${inside} is not inside the sandbox's workspace`);
    return host;
  };
  const exec = (o: SandboxExecOptions): SandboxProcess => {
    if (o.network === "host" && !installNetwork) {
      throw new Error(`sandbox ${id} was created without network for installs`);
    }
    const child = box.exec({
      argv: o.argv,
      cwd: o.cwd,
      env: o.env,
      network: o.network ?? "none",
      stdin: "pipe",
    });
    if (child.pid !== undefined) void onProc(child.pid);
    return wrapChild(child, bwrap, o.timeoutMs);
  };
  return {
    id,
    workspace,
    env: bwrap
      ? { HOME: BOX_HOME, TMPDIR: "/tmp", PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin` }
      : {
          HOME: join(dir, "box", "home"),
          TMPDIR: join(dir, "box", "tmp"),
          PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
        },
    worker: {
      node: process.execPath,
      entry: join(root, "services/worker/src/main.ts"),
      systemPrompt: join(root, "prompts/worker.md"),
    },
    async seedRepo(mirror, opts = {}) {
      const inside = join(workspace, "repo");
      const host = hostOf(inside);
      await mirror.cloneInto(host, {
        ...(opts.detach ? { detach: opts.detach } : {}),
        ...(opts.refs ? { refs: opts.refs } : {}),
      });
      await chownToBox(box, host);
      return inside;
    },
    exec,
    async readFile(path, maxBytes) {
      const p = exec({
        argv: ["sh", "-c", 'test -f "$1" || exit 3; exec cat -- "$1"', "sh", path],
        cwd: workspace,
        env: {},
      });
      const chunks: Buffer[] = [];
      let size = 0;
      let tooBig = false;
      p.stdout.on("data", (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          tooBig = true;
          p.kill();
        } else chunks.push(c);
      });
      p.stderr.resume();
      // The exit can be reported before the last of stdout was read (seen under load: a truncated bundle):
      // the file is whole once stdout ended too.
      const drained = new Promise<void>((resolve) => {
        p.stdout.once("end", resolve);
        p.stdout.once("close", resolve);
        p.stdout.once("error", () => resolve());
      });
      const { code } = await p.wait();
      await drained;
      if (tooBig) throw new Error(`${path} is larger than ${maxBytes} bytes`);
      if (code === 3) return undefined;
      if (code !== 0) throw new Error(`reading ${path} in the sandbox failed (exit ${code})`);
      return Buffer.concat(chunks);
    },
    async writeFile(path, data) {
      const child = box.exec({
        argv: ["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path],
        cwd: workspace,
        env: {},
        stdin: "pipe",
      });
      child.stdout?.resume();
      let err = "";
      child.stderr?.setEncoding("utf8").on("data", (d: string) => {
        err += d;
      });
      const done = new Promise<number | null>((r) => child.once("close", (code) => r(code)));
      child.stdin?.end(data);
      const code = await done;
      if (code !== 0) throw new Error(`writing ${path} in the sandbox failed (exit ${code}): ${err.trim()}`);
    },
    async limitHit() {
      if (await box.oomKilled()) return "memory";
      if (await box.pidsLimitHit()) return "processes";
      return undefined;
    },
    async terminate() {
      if (terminated) return;
      terminated = true;
      await box.killAll();
      // Processes are gone; the directory (a clone, maybe node_modules) is removed in the background.
      void box
        .destroy()
        .then(() => rm(dir, { recursive: true, force: true }))
        .then(unregister)
        .catch((err) => log.warn({ err, sandboxId: id }, "sandbox cleanup failed"));
    },
  };
}

/**
 * A {@link SandboxProcess} over a box's child. Killing it kills the whole bwrap sandbox of that exec
 * (its PID namespace) or, unsafe, its process group. `timeoutMs` > 0 kills it after that long.
 */
function wrapChild(child: ChildProcess, bwrap: boolean, timeoutMs?: number): SandboxProcess {
  const kill = () => {
    if (child.pid === undefined) return;
    try {
      process.kill(bwrap ? child.pid : -child.pid, "SIGKILL");
    } catch {
      // gone
    }
  };
  const exited = new Promise<{ code: number | null; signal?: string }>((resolve) => {
    child.once("exit", (code, signal) => resolve(signal ? { code, signal } : { code }));
    child.once("error", () => resolve({ code: null, signal: "spawn-error" }));
  });
  const timer = timeoutMs && timeoutMs > 0 ? setTimeout(kill, timeoutMs) : undefined;
  if (timer) void exited.then(() => clearTimeout(timer));
  child.stdin?.on("error", () => undefined);
  return {
    stdout: child.stdout!,
    stderr: child.stderr!,
    write(text) {
      if (child.stdin && !child.stdin.destroyed) child.stdin.write(text);
    },
    wait: () => exited,
    kill,
  };
}
