/**
 * Merge queue benchmark (`pnpm bench merge-queue`): what verification costs and what speculation wins back.
 *
 * One target per mode, the same 100 candidates in each: task branches adding `tasks/<id>.txt`, of which a known
 * 5 % (every 20th, from the 10th) write `BROKEN` and break the target's test suite. The suite takes a fixed time
 * (`sleep`, default 2 s) and fails when a task file says BROKEN; it is the target's test check, set as an operator
 * override would be (SWEEP_TEST_CMD). The merger's queue runs in process (no NATS): real git (a bare target, the
 * merger's working clone, its sandbox mirror) and real sandboxes of the local bubblewrap provider, one per
 * verification. Every candidate is submitted at once, as a backlog; a rejected one is not retried.
 *
 * Modes, in the same run: verification off (land what applies), serial verification (depth 1) and speculative
 * batches (depth 8, MERGE_SPECULATION_DEPTH). For each: landed and rejected candidates, elapsed wall time,
 * landed/h, the commits of main's first-parent history whose tree fails the suite (checked with `git grep` on
 * the tree, the suite's own rule), verifications, pushes and candidates per push, the deepest bisection, and the
 * median handoff-to-landing time. Goals (issue #12): no failing commit on main with verification on; speculative
 * ≥ 4× the landed/h of serial verification at depth 8.
 *
 * Options: `--tasks N` (100), `--test-ms N` (2000), `--depth N` (8), `--modes off,serial,speculative`.
 */
import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { emptyMetrics, Handoff } from "@longshot/contracts";
import { createMirrors } from "@longshot/git";
import { createLogger } from "@longshot/log";
import { createLocalBackend, createSandboxProvider, probeIsolation } from "@longshot/sandbox";
import { createMergeQueue, type MergeOutcome } from "../src/adapters/merge-queue.ts";
import { createMemoryMergedRecords } from "../src/adapters/merged-records.ts";

const { values: args } = parseArgs({
  options: {
    tasks: { type: "string", default: "100" },
    "test-ms": { type: "string", default: "2000" },
    depth: { type: "string", default: "8" },
    modes: { type: "string", default: "off,serial,speculative" },
  },
});
const TASKS = Number(args.tasks);
const TEST_MS = Number(args["test-ms"]);
const DEPTH = Number(args.depth);
const MODES = args.modes.split(",");
const GOAL_RATIO = 4;
/** One line to stdout (the figures are this program's output). */
const print = (line: string) => process.stdout.write(`${line}\n`);

const log = createLogger({ service: "bench-merge-queue", level: process.env.LOG_LEVEL ?? "silent" });
const git = (cwd: string, ...a: string[]) =>
  execFileSync("git", ["-c", "user.name=Bench", "-c", "user.email=bench@localhost", ...a], {
    cwd,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  }).trim();

/** Task `i` (1-based) breaks the suite: every 20th from the 10th, i.e. a known 5 %. */
const breaks = (i: number) => i % 20 === 10;
const taskId = (i: number) => `t${String(i).padStart(3, "0")}`;

/**
 * A bare target with the suite and one branch per task (`worker/<id>`, one commit on the initial main), built
 * with plumbing so every mode gets byte-identical candidates. Returns its path and the initial commit.
 */
function makeTarget(dir: string): { repo: string; initial: string; heads: string[] } {
  const repo = join(dir, "target.git");
  git(dir, "init", "-q", "--bare", "-b", "main", repo);
  const blob = (text: string) =>
    execFileSync("git", ["hash-object", "-w", "--stdin"], {
      cwd: repo,
      input: text,
      encoding: "utf8",
    }).trim();
  const tree = (entries: string) =>
    execFileSync("git", ["mktree"], { cwd: repo, input: entries, encoding: "utf8" }).trim();
  const pkg = blob(
    `${JSON.stringify({ name: "bench-target", private: true, scripts: { test: "sh test.sh" } })}\n`,
  );
  const test = blob(`sleep ${TEST_MS / 1000}\n! grep -rl BROKEN tasks\n`);
  const readme = blob("one file per task\n");
  const tasksTree = (extra: string) => tree(`100644 blob ${readme}\tREADME\n${extra}`);
  const rootTree = (tasks: string) =>
    tree(`100644 blob ${pkg}\tpackage.json\n040000 tree ${tasks}\ttasks\n100644 blob ${test}\ttest.sh\n`);
  const commit = (t: string, parent: string | undefined, msg: string) =>
    git(repo, "commit-tree", t, ...(parent ? ["-p", parent] : []), "-m", msg);
  const initial = commit(rootTree(tasksTree("")), undefined, "initial");
  git(repo, "update-ref", "refs/heads/main", initial);
  const heads: string[] = [];
  for (let i = 1; i <= TASKS; i++) {
    const file = blob(breaks(i) ? "BROKEN\n" : "ok\n");
    const head = commit(
      rootTree(tasksTree(`100644 blob ${file}\t${taskId(i)}.txt\n`)),
      initial,
      `task ${taskId(i)}`,
    );
    git(repo, "update-ref", `refs/heads/worker/${taskId(i)}`, head);
    heads.push(head);
  }
  return { repo, initial, heads };
}

function handoff(repo: string, i: number, head: string): Handoff {
  const id = taskId(i);
  return Handoff.parse({
    taskId: id,
    runId: "run-bench",
    status: "complete",
    summary: `adds tasks/${id}.txt`,
    filesChanged: [`tasks/${id}.txt`],
    concerns: [],
    suggestions: [],
    metrics: emptyMetrics(),
    branch: `worker/${id}`,
    head,
    task: {
      id,
      runId: "run-bench",
      description: `add tasks/${id}.txt`,
      scope: [`tasks/${id}.txt`],
      acceptance: "the suite passes",
      branch: `worker/${id}`,
      priority: 5,
      depth: 0,
      attempt: 1,
      repo,
      baseBranch: "main",
    },
  });
}

interface ModeResult {
  mode: string;
  depth: number;
  landed: number;
  rejected: number;
  other: number;
  elapsedMs: number;
  redCommits: number;
  brokenLanded: number;
  verifications: number;
  pushes: number;
  maxBisection: number;
  p50WaitMs: number;
  /** Candidate builds (git, serialized) and verifications (sandboxes, in parallel), summed, ms. */
  buildMs: number;
  verifyMs: number;
}

async function runMode(root: string, mode: string): Promise<ModeResult> {
  const dir = join(root, mode);
  await mkdir(join(dir, "sandboxes"), { recursive: true, mode: 0o711 });
  await chmod(dir, 0o711);
  const { repo, initial, heads } = makeTarget(dir);
  const verify = mode !== "off";
  const depth = mode === "speculative" ? DEPTH : 1;
  const provider = createSandboxProvider({
    backend: createLocalBackend({ isolation: "bwrap", tmpRoot: join(dir, "sandboxes"), log }),
    mirrors: createMirrors(join(dir, "mirrors")),
    log,
    limits: { memoryMb: 512, pidsMax: 256, cpuCores: 1 },
  });
  const queue = createMergeQueue({
    stateDir: join(dir, "state"),
    strategy: "rebase",
    log,
    records: createMemoryMergedRecords(),
    depth,
    ...(verify
      ? {
          verify: {
            provider,
            overrides: { test: "sh test.sh" },
            timeoutMs: 60_000,
            installNetwork: false,
          },
        }
      : {}),
  });
  const started = performance.now();
  const outcomes: MergeOutcome[] = await Promise.all(
    heads.map((head, i) => queue.submit(handoff(repo, i + 1, head), { receivedAt: Date.now() })),
  );
  const elapsedMs = performance.now() - started;
  const commits = git(repo, "rev-list", "--first-parent", `${initial}..main`).split("\n").filter(Boolean);
  // The suite's own rule on each commit's tree: red when a task file says BROKEN.
  const redCommits = commits.filter((sha) => {
    try {
      execFileSync("git", ["grep", "-q", "BROKEN", sha, "--", "tasks"], { cwd: repo });
      return true;
    } catch {
      return false;
    }
  }).length;
  const merged = outcomes.flatMap((o) => (o.kind === "merged" ? [o] : []));
  const waits = merged.map((o) => o.waitedMs).sort((a, b) => a - b);
  const stats = queue.stats();
  return {
    mode,
    depth,
    landed: merged.length,
    rejected: outcomes.filter((o) => o.kind === "rejected").length,
    other: outcomes.filter((o) => o.kind !== "merged" && o.kind !== "rejected").length,
    elapsedMs,
    redCommits,
    brokenLanded: heads.filter((_, i) => breaks(i + 1) && outcomes[i]?.kind === "merged").length,
    verifications: stats.verifications,
    pushes: stats.pushes,
    maxBisection: Math.max(0, ...outcomes.map((o) => (o.kind === "rejected" ? o.bisectionDepth : 0))),
    p50WaitMs: waits[Math.floor(waits.length / 2)] ?? 0,
    buildMs: stats.buildMsTotal,
    verifyMs: stats.verifyMsTotal,
  };
}

const perHour = (r: ModeResult) => (r.landed / r.elapsedMs) * 3_600_000;
const pad = (s: string | number, n: number) => String(s).padStart(n);

async function main(): Promise<void> {
  const probe = await probeIsolation();
  if (!probe.bwrap) throw new Error(`bubblewrap is not usable here: ${probe.bwrapProblem}`);
  process.env.GIT_CONFIG_GLOBAL = "/dev/null";
  process.env.GIT_CONFIG_NOSYSTEM = "1";
  const broken = Array.from({ length: TASKS }, (_, i) => i + 1).filter(breaks).length;
  print(
    `merge queue: ${TASKS} candidates (${broken} break the tests), test suite ${TEST_MS / 1000} s, local bubblewrap sandboxes, ${cpus().length} cores, queue in process (real git, no NATS)`,
  );
  const root = await mkdtemp(join(tmpdir(), "longshot-bench-merge-queue-"));
  await chmod(root, 0o711);
  const results: ModeResult[] = [];
  try {
    print(
      `${"mode".padEnd(18)}${pad("depth", 6)}${pad("landed", 8)}${pad("rejected", 10)}${pad("elapsed", 10)}${pad("landed/h", 10)}${pad("red commits", 13)}${pad("verifications", 15)}${pad("pushes", 8)}${pad("per push", 10)}${pad("bisection", 11)}${pad("p50 wait", 10)}`,
    );
    for (const mode of MODES) {
      const r = await runMode(root, mode);
      results.push(r);
      const name = mode === "off" ? "verification off" : mode === "serial" ? "serial verify" : "speculative";
      print(
        `${name.padEnd(18)}${pad(mode === "off" ? "-" : r.depth, 6)}${pad(r.landed, 8)}${pad(r.rejected, 10)}${pad(`${(r.elapsedMs / 1000).toFixed(1)} s`, 10)}${pad(Math.round(perHour(r)), 10)}${pad(r.redCommits, 13)}${pad(r.verifications, 15)}${pad(r.pushes, 8)}${pad((r.landed / Math.max(1, r.pushes)).toFixed(2), 10)}${pad(r.maxBisection, 11)}${pad(`${(r.p50WaitMs / 1000).toFixed(1)} s`, 10)}`,
      );
      print(
        `  builds ${(r.buildMs / 1000).toFixed(1)} s in total (serialized), verifications ${(r.verifyMs / 1000).toFixed(1)} s in total (${r.verifications ? (r.verifyMs / r.verifications / 1000).toFixed(2) : "0"} s each)`,
      );
      if (r.other > 0) print(`  (${r.other} candidate(s) ended otherwise: conflict, skipped or failed)`);
      if (r.brokenLanded > 0)
        print(`  ${r.brokenLanded} breaking candidate(s) landed; every commit after the first is red`);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  const serial = results.find((r) => r.mode === "serial");
  const spec = results.find((r) => r.mode === "speculative");
  const verified = results.filter((r) => r.mode !== "off");
  if (verified.length) {
    const red = verified.reduce((n, r) => n + r.redCommits, 0);
    print(`red commits on main with verification on: ${red} (goal 0: ${red === 0 ? "met" : "NOT met"})`);
  }
  if (serial && spec) {
    const ratio = perHour(spec) / perHour(serial);
    print(
      `speculative (depth ${spec.depth}) / serial landed/h: ${ratio.toFixed(2)}× (goal ≥ ${GOAL_RATIO}×: ${ratio >= GOAL_RATIO ? "met" : "NOT met"})`,
    );
  }
}

await main();
