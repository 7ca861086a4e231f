import { readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";

/**
 * What an embedded cluster keeps under `LONGSHOT_STATE_DIR` (default `~/.longshot`), so runs, their events and
 * logs outlive the CLI: `nats/<node>` (JetStream stores), `nats/conf` (generated server configs, 0600),
 * `logs/<service>.log`, `cwd/` (the services' empty working directory: no stray `.env` is read there),
 * `cluster.json` (the live cluster: owner pid, NATS URLs, credentials, child pids; 0600), `runs/<runId>.json`
 * (what the CLI submitted: repo, base branch, the commit it started from), and each service's own directory.
 */
export interface StateLayout {
  root: string;
  natsDir: string;
  confDir: string;
  logDir: string;
  cwd: string;
  clusterFile: string;
  runsDir: string;
}

/** The state directory of this CLI: `LONGSHOT_STATE_DIR` from `env`, else `~/.longshot`. */
export function defaultStateDir(env: Record<string, string | undefined>): string {
  return env.LONGSHOT_STATE_DIR || join(homedir(), ".longshot");
}

/** The layout under `root`. */
export function stateLayout(root: string): StateLayout {
  return {
    root,
    natsDir: join(root, "nats"),
    confDir: join(root, "nats", "conf"),
    logDir: join(root, "logs"),
    cwd: join(root, "cwd"),
    clusterFile: join(root, "cluster.json"),
    runsDir: join(root, "runs"),
  };
}

/** NATS credentials of one user. */
export interface Credentials {
  user: string;
  pass: string;
}

/** `cluster.json`: a running embedded cluster, written by the CLI that owns it. */
export interface ClusterRecord {
  /** Pid of the CLI that started (and supervises) the cluster. */
  ownerPid: number;
  /** The owner's command line when it wrote the record (a reused pid does not pass for the owner). */
  ownerCmd?: string;
  /** Client URL of every node. */
  natsUrls: string[];
  /** Users of the cluster (none when it runs without auth). */
  admin?: Credentials;
  submitter?: Credentials;
  startedAt: string;
  /** nats-server only, opened to read the store (`runs`, `status`, `logs` without a running cluster). */
  readOnly?: boolean;
  /** Current pid of every child: `nats-<node>` and each service. */
  pids: Record<string, number>;
}

/** Reads `cluster.json`, or undefined when there is none (or it does not parse). */
export async function readClusterRecord(root: string): Promise<ClusterRecord | undefined> {
  try {
    return JSON.parse(await readFile(stateLayout(root).clusterFile, "utf8")) as ClusterRecord;
  } catch {
    return undefined;
  }
}

/** Writes `cluster.json` atomically with mode 0600 (it holds credentials). */
export async function writeClusterRecord(root: string, rec: ClusterRecord): Promise<void> {
  const file = stateLayout(root).clusterFile;
  await mkdir(root, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  const ownerCmd = rec.ownerPid === process.pid ? cmdlineOf(process.pid) : rec.ownerCmd;
  await writeFile(tmp, JSON.stringify({ ...rec, ...(ownerCmd ? { ownerCmd } : {}) }, null, 2), {
    mode: 0o600,
  });
  await rename(tmp, file);
}

/** Removes `cluster.json`. */
export async function removeClusterRecord(root: string): Promise<void> {
  await rm(stateLayout(root).clusterFile, { force: true });
}

/** The command line of a process (`/proc/<pid>/cmdline`, NULs as spaces), or undefined when it is gone. */
export function cmdlineOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return undefined;
  }
}

/** True when the owner of `rec` still runs (same pid, same command line). */
export function ownerAlive(rec: ClusterRecord): boolean {
  const cmd = cmdlineOf(rec.ownerPid);
  return cmd !== undefined && (rec.ownerCmd === undefined || cmd === rec.ownerCmd);
}

/** The cluster record of `root` when its owner (another process) still runs, else undefined. */
export async function liveCluster(root: string): Promise<ClusterRecord | undefined> {
  const rec = await readClusterRecord(root);
  return rec && rec.ownerPid !== process.pid && ownerAlive(rec) ? rec : undefined;
}

/**
 * Kills what a dead owner's cluster left running (a CLI killed where the kernel could not signal its children):
 * every recorded pid whose command line is still that child's (`longshot-<service>`, or a nats-server with this
 * state dir's config), with SIGKILL to its process group. Returns how many it killed.
 */
export async function reapStale(root: string, rec: ClusterRecord): Promise<number> {
  const { confDir } = stateLayout(root);
  let killed = 0;
  for (const [name, pid] of Object.entries(rec.pids)) {
    const cmd = cmdlineOf(pid);
    if (!cmd) continue;
    const ours = name.startsWith("nats-") ? cmd.includes(confDir) : cmd.startsWith(`longshot-${name}`);
    if (!ours) continue;
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        continue;
      }
    }
    killed++;
  }
  return killed;
}

/** What the CLI records about a run it submitted (`runs/<runId>.json`). */
export interface RunRecord {
  runId: string;
  repo: string;
  baseBranch: string;
  /** The base branch's commit when the run was submitted (local repositories). */
  startSha?: string;
  submittedAt: string;
}

/** Writes `runs/<runId>.json`. */
export async function writeRunRecord(root: string, rec: RunRecord): Promise<void> {
  const dir = stateLayout(root).runsDir;
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${rec.runId}.json`), JSON.stringify(rec, null, 2));
}

/** Every run record, oldest first. */
export async function readRunRecords(root: string): Promise<RunRecord[]> {
  const dir = stateLayout(root).runsDir;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: RunRecord[] = [];
  for (const n of names.filter((f) => f.endsWith(".json"))) {
    try {
      out.push(JSON.parse(await readFile(join(dir, n), "utf8")) as RunRecord);
    } catch {
      // a partly written record: skip it
    }
  }
  return out.sort((a, b) => a.submittedAt.localeCompare(b.submittedAt));
}

/** How many nats-server nodes the store of `root` was created with (`nats/nodes`), or undefined when none. */
export async function storedNodeCount(root: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(join(stateLayout(root).natsDir, "nodes"), "utf8")).trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Records the node count of the store of `root`. */
export async function writeStoredNodeCount(root: string, nodes: number): Promise<void> {
  await mkdir(stateLayout(root).natsDir, { recursive: true });
  await writeFile(join(stateLayout(root).natsDir, "nodes"), `${nodes}\n`);
}
