// The worker: runs one task inside a sandbox and reports on stdout (NDJSON WorkerLines).
// Usage: node services/worker/src/main.ts <input.json>   (WorkerInput; model calls relayed over stdin/stdout)
import { readFile } from "node:fs/promises";
import { Task, WorkerInput, type WorkerLine } from "@longshot/contracts";
import { checkoutNewBranch, headSha } from "@longshot/git";
import { prepareConflictFix } from "./adapters/conflict.ts";
import { startModelRelay } from "./adapters/model-relay.ts";
import { finalizeRepo, readRebaseState, rebaseInProgress } from "./adapters/repo.ts";
import {
  type AgentOutcome,
  buildHandoff,
  emptyAgentOutcome,
  emptyRepoOutcome,
  parseAgentHandoff,
  type RepoOutcome,
  summaryLine,
} from "./domain/handoff.ts";
import { applyModelOverride } from "./domain/input.ts";
import { buildTaskPrompt, type RebaseState } from "./domain/prompt.ts";
import { createCommandHarness } from "./harness/command.ts";
import type { Harness } from "./harness/types.ts";

process.title = "longshot-worker";

// ==== Config ====
// The sandbox holds no model key: model calls go through the relay (stdout → provider → model endpoint).
const WORKER_COMMAND = process.env.WORKER_COMMAND;
// Commit identity for the agent's own `git commit` (not a secret; never written to git config).
process.env.GIT_AUTHOR_NAME ??= process.env.GIT_COMMIT_NAME || "Longshot";
process.env.GIT_AUTHOR_EMAIL ??= process.env.GIT_COMMIT_EMAIL || "longshot@localhost";
process.env.GIT_COMMITTER_NAME ??= process.env.GIT_AUTHOR_NAME;
process.env.GIT_COMMITTER_EMAIL ??= process.env.GIT_AUTHOR_EMAIL;
// Nobody can answer an editor in a sandbox: `git rebase --continue`, `git commit` without -m, … must not
// wait for one.
process.env.GIT_EDITOR = "true";

// stdout carries the protocol only: anything a library prints goes to stderr.
for (const method of ["log", "info", "debug", "warn"] as const) {
  console[method] = (...args: unknown[]) => console.error(...args);
}

// ==== Output ====
function emit(line: WorkerLine): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(line)}\n`, () => resolve()));
}

// ==== Run ====
/** Concern of a conflict-fix attempt whose agent stopped with the rebase still in progress. */
const REBASE_NOT_COMPLETED = "rebase not completed";

/**
 * Puts the clone on `task.branch`: a new branch at `origin/<baseBranch>`, or for conflict-fix tasks
 * `origin/<conflictBranch>` mid-rebase onto the base (see prepareConflictFix). Throws when that fails.
 */
async function setupBranch(task: Task, repoDir: string): Promise<void> {
  if (task.conflictBranch !== undefined) await prepareConflictFix(repoDir, task);
  else await checkoutNewBranch(repoDir, task.branch, `refs/remotes/origin/${task.baseBranch}`);
}

async function run(rawInput: WorkerInput, startedAt: number): Promise<void> {
  // task.model (e.g. the fallback model of a retry) overrides the dispatcher's model here, and only here.
  const input = applyModelOverride(rawInput);
  const { task, repoDir } = input;
  const conflictFix = task.conflictBranch !== undefined;
  try {
    await setupBranch(task, repoDir);
  } catch (err) {
    await emitCrash(task, `sandbox setup failed: ${errorText(err)}`, startedAt);
    return;
  }
  const relay = await startModelRelay(emit, process.stdin);
  // The Pi SDK is loaded only when it runs: importing it costs ~1.7 CPU-s per sandbox, the command harness 0.15.
  const harness: Harness =
    input.harness === "command"
      ? createCommandHarness(WORKER_COMMAND, relay.baseUrl)
      : (await import("./harness/pi.ts")).createPiHarness({ baseUrl: relay.baseUrl });
  const startSha = await headSha(repoDir);
  const rebase: RebaseState | undefined = conflictFix ? await readRebaseState(repoDir) : undefined;
  await emit({
    kind: "progress",
    message:
      `worker started on ${task.branch} (${input.harness} harness, model ${input.llm.model})` +
      (rebase?.inProgress ? `, rebase stopped on ${rebase.files.length} conflicted file(s)` : ""),
  });

  const controller = new AbortController();
  let timedOut = false;
  let interruptedBy: string | undefined;
  // The deadline counts from the worker's start, so slow startup cannot push it past the provider's kill.
  const timer = setTimeout(
    () => {
      timedOut = true;
      controller.abort();
    },
    Math.max(0, input.timeoutMs - (Date.now() - startedAt)),
  );
  const onSignal = (signal: NodeJS.Signals) => {
    interruptedBy = signal;
    controller.abort();
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);

  let agent: AgentOutcome;
  try {
    const prompt = buildTaskPrompt(task, rebase !== undefined ? { rebase } : {});
    agent = await harness.run(input, prompt, (p) => void emit({ kind: "progress", ...p }), controller.signal);
  } catch (err) {
    agent = { ...emptyAgentOutcome(), stopReason: "error", errorMessage: errorText(err) };
  } finally {
    clearTimeout(timer);
    await relay.close();
  }
  await emit({
    kind: "progress",
    message: `agent stopped (${agent.stopReason})`,
    toolCalls: agent.toolCallCount,
    tokens: agent.tokensUsed,
  });

  const parsed = parseAgentHandoff(agent.finalText);
  const repoFailures: string[] = [];
  let repo: RepoOutcome & { concerns: string[] };
  if (conflictFix && (await rebaseInProgress(repoDir))) {
    // Committing now would put a half-rebased detached HEAD somewhere; nothing is committed or pushed.
    const still = await readRebaseState(repoDir);
    repoFailures.push(REBASE_NOT_COMPLETED);
    if (still.files.length > 0) repoFailures.push(`still conflicted: ${still.files.join(", ")}`);
    repo = { ...emptyRepoOutcome(), concerns: [] };
  } else {
    const finalized = await finalizeRepo({
      repoDir,
      startSha,
      ...(conflictFix ? { diffFrom: `refs/remotes/origin/${task.baseBranch}` } : {}),
      branch: task.branch,
      baseBranch: task.baseBranch,
      bundlePath: input.bundlePath,
      commitMessage: `${task.id}: ${summaryLine(parsed, agent.finalText)}`,
    });
    if (finalized.conflictMarkers.length > 0) {
      repoFailures.push(`conflict markers left in: ${finalized.conflictMarkers.join(", ")}`);
    }
    repo = finalized;
  }
  if (repo.head)
    await emit({ kind: "progress", message: `bundled ${task.branch} at ${repo.head.slice(0, 12)}` });

  const handoff = buildHandoff({
    task,
    parsed,
    agent,
    repo,
    durationMs: Date.now() - startedAt,
    ...(timedOut ? { timedOutAfterMs: input.timeoutMs } : {}),
    ...(interruptedBy !== undefined && !timedOut ? { interruptedBy } : {}),
    repoFailures,
    extraConcerns: repo.concerns,
  });
  await emit({ kind: "handoff", handoff });
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function main(): Promise<number> {
  // Process start, not now: loading Pi alone takes a second or two, and it counts against the deadline.
  const startedAt = Math.round(performance.timeOrigin);
  const inputPath = process.argv[2];
  if (!inputPath) {
    console.error("usage: node services/worker/src/main.ts <input.json>");
    return 1;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(inputPath, "utf8"));
  } catch (err) {
    console.error(`worker: cannot read ${inputPath}: ${errorText(err)}`);
    return 1;
  }
  const input = WorkerInput.safeParse(raw);
  if (!input.success) {
    const message = `invalid worker input: ${input.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`;
    console.error(`worker: ${message}`);
    const task = Task.safeParse((raw as { task?: unknown } | null)?.task);
    if (task.success) await emitCrash(task.data, message, startedAt);
    return 1;
  }
  try {
    await run(input.data, startedAt);
    return 0;
  } catch (err) {
    console.error("worker crashed:", err);
    await emitCrash(input.data.task, `worker crashed: ${errorText(err)}`, startedAt);
    return 1;
  }
}

async function emitCrash(task: Task, failure: string, startedAt: number): Promise<void> {
  const handoff = buildHandoff({
    task,
    parsed: { ok: false, reason: "worker crashed" },
    agent: emptyAgentOutcome(),
    repo: emptyRepoOutcome(),
    durationMs: Date.now() - startedAt,
    failure,
  });
  await emit({ kind: "handoff", handoff });
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error("worker: fatal", err);
    process.exit(1);
  },
);
