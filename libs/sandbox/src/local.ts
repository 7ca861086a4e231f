import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { createInterface } from "node:readline";
import { type Handoff, type Task, type WorkerInput, WorkerLine } from "@longshot/contracts";
import { checkoutNewBranch, cloneRepo } from "@longshot/git";
import type { Logger } from "@longshot/log";
import { prepareConflictFix } from "./conflict.ts";
import { failedHandoff } from "./failed-handoff.ts";
import { sandboxEnv, workerDeadlineMs } from "./policy.ts";
import type { SandboxProvider, SandboxResult, SandboxRunOptions } from "./provider.ts";

/** Stderr kept from the worker for crash reports, in chars. */
const STDERR_TAIL_CHARS = 4_000;
/** How long to wait for the worker's stdout to drain after it exited, in ms. */
const DRAIN_TIMEOUT_MS = 2_000;

/** Options of {@link createLocalSandboxProvider}. */
export interface LocalSandboxOptions {
  /** Absolute path of the worker entry (`services/worker/src/main.ts`). */
  workerEntry: string;
  /** Absolute path of the worker system prompt (`prompts/worker.md`). */
  systemPromptPath: string;
  /** Node binary that runs the worker; default the current one. */
  nodePath?: string;
  /** Where sandbox directories are created; default the OS temp dir. */
  tmpRoot?: string;
  log: Logger;
  /** Harness the worker runs; default `pi`. */
  harness?: WorkerInput["harness"];
  /** Command template for the `command` harness (passed as env `WORKER_COMMAND`). */
  workerCommand?: string;
  /** Time between SIGTERM and SIGKILL when terminating a sandbox, in ms; default 5000. */
  killGraceMs?: number;
  /**
   * Directory recording live sandboxes (`<sandboxId>.json`: process group and directory), so that a
   * provider restarted after a crash can reap the sandboxes its predecessor left running
   * ({@link reapOrphanSandboxes}). Default: no registry.
   */
  registryDir?: string;
}

/**
 * The `local` sandbox provider: a temp directory `longshot-sandbox-<taskId>-*` holding a fresh clone of the
 * target (`repo/`; for conflict-fix tasks prepared by `prepareConflictFix`: `task.branch` from
 * `origin/<conflictBranch>`, mid-rebase onto `origin/<baseBranch>` with the conflicts in the tree), the
 * worker input (`input.json`) and a private `tmp/` (the worker's TMPDIR), and the
 * worker as a child process in its own process group (`detached`), with cwd = the clone and a minimal
 * environment (see `sandboxEnv`). The worker's agent deadline is `workerDeadlineMs(timeoutMs)`; at
 * `timeoutMs` after the spawn (or on abort) the whole group gets SIGTERM, then SIGKILL after
 * `killGraceMs`. After the worker exits the group is SIGKILLed anyway (stray background processes) and
 * the directory is removed, whatever happened.
 */
export function createLocalSandboxProvider(options: LocalSandboxOptions): SandboxProvider {
  return {
    name: "local",
    run: (task, opts) => runLocal(options, task, opts),
  };
}

async function runLocal(
  options: LocalSandboxOptions,
  task: Task,
  opts: SandboxRunOptions,
): Promise<SandboxResult> {
  const startedAt = Date.now();
  const dir = await mkdtemp(join(options.tmpRoot ?? tmpdir(), `longshot-sandbox-${task.id}-`));
  const sandboxId = basename(dir);
  const log = options.log.child({ taskId: task.id, sandboxId });
  try {
    const repoDir = join(dir, "repo");
    try {
      await cloneRepo(task.repo, repoDir);
      if (task.conflictBranch !== undefined) {
        const setup = await prepareConflictFix(repoDir, task);
        log.info({ conflictBranch: task.conflictBranch, conflicts: setup.conflicts }, "conflict-fix rebase");
      } else {
        await checkoutNewBranch(repoDir, task.branch, `origin/${task.baseBranch}`);
      }
    } catch (err) {
      const reason = `sandbox setup failed: ${err instanceof Error ? err.message : String(err)}`;
      log.warn({ err }, "sandbox setup failed");
      return {
        handoff: failedHandoff(task, reason, Date.now() - startedAt),
        sandboxId,
        exitCode: null,
        timedOut: false,
      };
    }
    const tmp = join(dir, "tmp");
    await mkdir(tmp);
    const input: WorkerInput = {
      task,
      repoDir,
      systemPromptPath: options.systemPromptPath,
      llm: { baseUrl: opts.llm.baseUrl, model: opts.llm.model, maxTokens: opts.llm.maxTokens },
      timeoutMs: workerDeadlineMs(opts.timeoutMs),
      harness: options.harness ?? "pi",
    };
    const inputPath = join(dir, "input.json");
    await writeFile(inputPath, JSON.stringify(input, null, 2));
    const env = sandboxEnv(
      process.env,
      {
        TMPDIR: tmp,
        ...(options.workerCommand !== undefined ? { WORKER_COMMAND: options.workerCommand } : {}),
      },
      opts.llm.apiKey,
    );
    const child = spawn(options.nodePath ?? process.execPath, [options.workerEntry, inputPath], {
      cwd: repoDir,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    log.info({ pid: child.pid, timeoutMs: opts.timeoutMs }, "sandbox started");
    if (options.registryDir && child.pid) {
      await mkdir(options.registryDir, { recursive: true });
      await writeFile(
        join(options.registryDir, `${sandboxId}.json`),
        JSON.stringify({ pgid: child.pid, dir }),
      );
    }
    return await supervise(child, task, opts, options.killGraceMs ?? 5_000, log, sandboxId, startedAt);
  } finally {
    if (options.registryDir) await rm(join(options.registryDir, `${sandboxId}.json`), { force: true });
    await rm(dir, { recursive: true, force: true });
    log.info({ durationMs: Date.now() - startedAt }, "sandbox removed");
  }
}

/** Streams the worker's lines, enforces the deadline and abort, and turns the outcome into a result. */
async function supervise(
  child: ChildProcess,
  task: Task,
  opts: SandboxRunOptions,
  killGraceMs: number,
  log: Logger,
  sandboxId: string,
  startedAt: number,
): Promise<SandboxResult> {
  let handoff: Handoff | undefined;
  let stderrTail = "";
  let terminatedBy: "timeout" | "abort" | undefined;
  let terminating = false;
  let graceTimer: NodeJS.Timeout | undefined;

  const killGroup = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // group already gone
    }
  };
  const terminate = (why: "timeout" | "abort") => {
    if (terminating) return;
    terminating = true;
    // A worker that already handed off is only lingering: kill it, but keep its result.
    if (handoff === undefined) terminatedBy = why;
    log.warn({ why, handedOff: handoff !== undefined }, "terminating sandbox");
    killGroup("SIGTERM");
    graceTimer = setTimeout(() => killGroup("SIGKILL"), killGraceMs);
  };

  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream, crlfDelay: Infinity });
  const drained = new Promise<void>((resolve) => lines.once("close", resolve));
  lines.on("line", (text) => {
    const line = parseLine(text);
    if (line === undefined) {
      if (text.trim().length > 0) log.warn({ line: text.slice(0, 500) }, "non-protocol line from worker");
      return;
    }
    if (line.kind === "handoff") {
      if (line.handoff.taskId !== task.id) {
        log.warn({ got: line.handoff.taskId }, "handoff for another task ignored");
        return;
      }
      handoff = line.handoff;
    }
    try {
      opts.onLine(line);
    } catch (err) {
      log.warn({ err }, "onLine threw");
    }
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
  });

  const timer = setTimeout(() => terminate("timeout"), opts.timeoutMs);
  const onAbort = () => terminate("abort");
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener("abort", onAbort, { once: true });

  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
    (resolve) => {
      child.once("error", (error) => resolve({ code: null, signal: null, error }));
      child.once("exit", (code, signal) => resolve({ code, signal }));
    },
  );
  clearTimeout(timer);
  if (graceTimer) clearTimeout(graceTimer);
  opts.signal?.removeEventListener("abort", onAbort);
  // Whatever the worker left running in its group goes with it.
  killGroup("SIGKILL");
  await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, DRAIN_TIMEOUT_MS).unref())]);
  lines.close();

  const durationMs = Date.now() - startedAt;
  const exitCode = exit.code;
  log.info(
    { exitCode, signal: exit.signal, terminatedBy, handedOff: handoff !== undefined },
    "worker exited",
  );
  if (terminatedBy !== undefined) {
    const reason =
      terminatedBy === "timeout"
        ? `sandbox timed out after ${Math.round(opts.timeoutMs / 1000)} s`
        : "sandbox aborted by the dispatcher";
    // A handoff written while shutting down (the worker got SIGTERM) keeps its head and metrics.
    const result = handoff
      ? { ...handoff, status: "failed" as const, concerns: [reason, ...handoff.concerns] }
      : failedHandoff(task, reason, durationMs);
    return { handoff: result, sandboxId, exitCode, timedOut: terminatedBy === "timeout" };
  }
  if (handoff !== undefined) return { handoff, sandboxId, exitCode, timedOut: false };
  const why = exit.error
    ? `worker failed to start: ${exit.error.message}`
    : `worker exited with ${exitCode ?? exit.signal} without a handoff`;
  const tail = redactKey(stderrTail.trim(), opts.llm.apiKey);
  return {
    handoff: failedHandoff(task, tail.length > 0 ? `${why}; stderr: ${tail}` : why, durationMs),
    sandboxId,
    exitCode,
    timedOut: false,
  };
}

function parseLine(text: string): WorkerLine | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = WorkerLine.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

function redactKey(text: string, key: string | undefined): string {
  return key && key.length >= 4 ? text.split(key).join("[redacted]") : text;
}

/**
 * Kills every sandbox recorded in `registryDir` (SIGKILL to its process group) and removes its directory and
 * record. Call it when a provider starts: after a crash of its process, the detached sandboxes it started
 * would otherwise keep running (and pushing) next to the redelivered attempts. Returns how many were reaped.
 */
export async function reapOrphanSandboxes(registryDir: string): Promise<number> {
  let names: string[];
  try {
    names = (await readdir(registryDir)).filter((n) => n.endsWith(".json"));
  } catch {
    return 0;
  }
  for (const name of names) {
    const path = join(registryDir, name);
    try {
      const rec = JSON.parse(await readFile(path, "utf8")) as { pgid?: number; dir?: string };
      if (typeof rec.pgid === "number" && rec.pgid > 1) {
        try {
          process.kill(-rec.pgid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      if (typeof rec.dir === "string" && basename(rec.dir).startsWith("longshot-sandbox-")) {
        await rm(rec.dir, { recursive: true, force: true });
      }
    } finally {
      await rm(path, { force: true });
    }
  }
  return names.length;
}
