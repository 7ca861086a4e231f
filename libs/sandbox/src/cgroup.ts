import { existsSync } from "node:fs";
import { access, constants, mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { BoxLimits } from "./box.ts";

/** Period of the CPU bandwidth controller, in µs (the kernel's default `cpu.cfs_period_us`). */
const CPU_PERIOD_US = 100_000;
/**
 * Relative CPU weight of sandboxes against the rest of the machine: half of a default cgroup (v1 `cpu.shares`
 * 1024, v2 `cpu.weight` 100), so the control plane is not starved by busy sandboxes.
 */
const CPU_SHARES_V1 = 512;
const CPU_WEIGHT_V2 = 50;

/** Which cgroup interface limits boxes on this host (`none`: no writable cgroup hierarchy). */
export type CgroupKind = "cgroup2" | "cgroup1" | "none";

/** One box's cgroup(s): the `cgroup.procs` files a process writes its pid to, to join. */
export interface BoxCgroup {
  kind: "cgroup2" | "cgroup1";
  /** `cgroup.procs` of every hierarchy the box belongs to (one for v2; memory, pids, cpu for v1). */
  procsFiles: string[];
  /** Directories of the box's cgroups (removed by {@link removeCgroup}). */
  dirs: string[];
}

/** v1 controllers a box joins, in the order their directories are created. */
const V1_CONTROLLERS = ["memory", "pids", "cpu"] as const;

async function writable(path: string): Promise<boolean> {
  try {
    await access(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds the cgroup interface boxes can use, under `mount` (default `/sys/fs/cgroup`):
 * - `cgroup2` when `mount` is a unified hierarchy (it has `cgroup.controllers`) offering memory, pids and cpu,
 *   and `<mount>/<parent>` can be created/written (root, or a delegated subtree);
 * - `cgroup1` when the v1 memory, pids and cpu hierarchies are mounted under `mount` and writable (root);
 * - `none` otherwise (the caller falls back to rlimits).
 * See the kernel's Documentation/admin-guide/cgroup-v2.rst and cgroup-v1/.
 */
export async function detectCgroup(mount = "/sys/fs/cgroup", parent = "longshot"): Promise<CgroupKind> {
  const controllersFile = join(mount, "cgroup.controllers");
  if (existsSync(controllersFile)) {
    const controllers = (await readFile(controllersFile, "utf8")).trim().split(/\s+/);
    const base = join(mount, parent);
    const ok = ["memory", "pids", "cpu"].every((c) => controllers.includes(c));
    if (ok && ((await writable(mount)) || (existsSync(base) && (await writable(base))))) return "cgroup2";
    return "none";
  }
  for (const c of V1_CONTROLLERS) {
    if (!existsSync(join(mount, c, "cgroup.procs")) || !(await writable(join(mount, c)))) return "none";
  }
  return "cgroup1";
}

async function enableV2Controllers(dir: string): Promise<void> {
  const subtree = join(dir, "cgroup.subtree_control");
  const enabled = (await readFile(subtree, "utf8")).trim().split(/\s+/);
  const missing = ["memory", "pids", "cpu"].filter((c) => !enabled.includes(c));
  if (missing.length > 0) await writeFile(subtree, missing.map((c) => `+${c}`).join(" "));
}

/**
 * Creates the cgroup of box `id` under `<mount>/<parent>` with `limits` applied: memory (hard limit, no
 * swap), pids, CPU bandwidth (`cpuCores` × the 100 ms period) and a halved CPU weight (sandboxes yield to the
 * control plane). Throws when the hierarchy cannot be written (the caller decided on `kind` beforehand).
 */
export async function createCgroup(
  kind: "cgroup2" | "cgroup1",
  id: string,
  limits: BoxLimits,
  mount = "/sys/fs/cgroup",
  parent = "longshot",
): Promise<BoxCgroup> {
  if (kind === "cgroup2") {
    const base = join(mount, parent);
    await mkdir(base, { recursive: true });
    if (await writable(join(mount, "cgroup.subtree_control"))) await enableV2Controllers(mount);
    await enableV2Controllers(base);
    const dir = join(base, id);
    await mkdir(dir);
    if (limits.memoryMb !== undefined) {
      await writeFile(join(dir, "memory.max"), String(limits.memoryMb * 1024 * 1024));
      if (existsSync(join(dir, "memory.swap.max"))) await writeFile(join(dir, "memory.swap.max"), "0");
    }
    if (limits.pidsMax !== undefined) await writeFile(join(dir, "pids.max"), String(limits.pidsMax));
    if (limits.cpuCores !== undefined) {
      const quota = Math.max(1000, Math.round(limits.cpuCores * CPU_PERIOD_US));
      await writeFile(join(dir, "cpu.max"), `${quota} ${CPU_PERIOD_US}`);
    }
    await writeFile(join(dir, "cpu.weight"), String(CPU_WEIGHT_V2));
    return { kind, procsFiles: [join(dir, "cgroup.procs")], dirs: [dir] };
  }
  const dirs: string[] = [];
  for (const c of V1_CONTROLLERS) {
    const dir = join(mount, c, parent, id);
    await mkdir(dir, { recursive: true });
    dirs.push(dir);
  }
  const [memDir, pidsDir, cpuDir] = dirs as [string, string, string];
  if (limits.memoryMb !== undefined) {
    const bytes = String(limits.memoryMb * 1024 * 1024);
    await writeFile(join(memDir, "memory.limit_in_bytes"), bytes);
    // With swap accounting, memory+swap gets the same limit: no swapping past the limit.
    const memsw = join(memDir, "memory.memsw.limit_in_bytes");
    if (existsSync(memsw)) await writeFile(memsw, bytes).catch(() => undefined);
  }
  if (limits.pidsMax !== undefined) await writeFile(join(pidsDir, "pids.max"), String(limits.pidsMax));
  if (limits.cpuCores !== undefined) {
    await writeFile(join(cpuDir, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
    const quota = Math.max(1000, Math.round(limits.cpuCores * CPU_PERIOD_US));
    await writeFile(join(cpuDir, "cpu.cfs_quota_us"), String(quota));
  }
  await writeFile(join(cpuDir, "cpu.shares"), String(CPU_SHARES_V1)).catch(() => undefined);
  return { kind, procsFiles: dirs.map((d) => join(d, "cgroup.procs")), dirs };
}

/**
 * The {@link BoxCgroup} of directories recorded earlier (orphan reaping): v2 when there is one directory,
 * v1 (memory, pids, cpu, in that order) otherwise.
 */
export function cgroupFromDirs(dirs: string[]): BoxCgroup {
  return {
    kind: dirs.length === 1 ? "cgroup2" : "cgroup1",
    dirs,
    procsFiles: dirs.map((d) => join(d, "cgroup.procs")),
  };
}

/** Pids of every process in the box's cgroup(s). */
export async function cgroupPids(cg: BoxCgroup): Promise<number[]> {
  const pids = new Set<number>();
  for (const f of cg.procsFiles) {
    const text = await readFile(f, "utf8").catch(() => "");
    for (const line of text.split("\n")) if (line.trim()) pids.add(Number(line));
  }
  return [...pids];
}

/**
 * SIGKILLs every process of the cgroup: `cgroup.kill` on v2 (Linux ≥ 5.14, atomic), else repeated scans of
 * `cgroup.procs` (a process forking while it is scanned is caught by the next pass; pids.max bounds the
 * race). Resolves when the cgroup is empty or after ~2 s.
 */
export async function killCgroup(cg: BoxCgroup): Promise<void> {
  if (cg.kind === "cgroup2") {
    const killFile = join(cg.dirs[0]!, "cgroup.kill");
    if (existsSync(killFile)) await writeFile(killFile, "1").catch(() => undefined);
  }
  for (let pass = 0; pass < 100; pass++) {
    const pids = await cgroupPids(cg);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * True when the kernel's OOM killer killed a process of the cgroup for its memory limit (v2
 * `memory.events` `oom_kill`, v1 `memory.oom_control` `oom_kill`, or, on kernels without that counter, a
 * non-zero v1 `memory.failcnt`).
 */
export async function cgroupOomKilled(cg: BoxCgroup): Promise<boolean> {
  const dir = cg.dirs[0]!;
  if (cg.kind === "cgroup2") {
    const events = await readFile(join(dir, "memory.events"), "utf8").catch(() => "");
    return /^oom_kill\s+[1-9]/m.test(events);
  }
  const control = await readFile(join(dir, "memory.oom_control"), "utf8").catch(() => "");
  const m = /^oom_kill\s+(\d+)/m.exec(control);
  if (m) return Number(m[1]) > 0;
  const failcnt = await readFile(join(dir, "memory.failcnt"), "utf8").catch(() => "0");
  return Number(failcnt.trim()) > 0;
}

/** True when a fork in the cgroup was refused for `pids.max` (`pids.events` `max` > 0, v1 and v2). */
export async function cgroupPidsLimitHit(cg: BoxCgroup): Promise<boolean> {
  const dir = cg.kind === "cgroup2" ? cg.dirs[0]! : cg.dirs[1]!;
  const events = await readFile(join(dir, "pids.events"), "utf8").catch(() => "");
  return /^max\s+[1-9]/m.test(events);
}

/** Removes the box's cgroup directories (after {@link killCgroup}); retries while the kernel still lists tasks. */
export async function removeCgroup(cg: BoxCgroup): Promise<void> {
  for (const dir of cg.dirs) {
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        await rmdir(dir);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") break;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}
