import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Handoff, SweepCheck, Task, WorkerInput } from "@longshot/contracts";
import { failedHandoff, WorkerLine } from "@longshot/contracts";
import type { RepoMirror } from "@longshot/git";
import type { Logger } from "@longshot/log";
import type { SandboxBackend, SandboxCapabilities, SandboxHandle } from "./backend.ts";
import type { BoxLimits } from "./box.ts";
import { abortReason } from "./failed-handoff.ts";
import { createModelRelay } from "./model-relay.ts";
import { workerDeadlineMs, workerEnv } from "./policy.ts";

/** Stderr kept from the worker for crash reports, in chars. */
const STDERR_TAIL_CHARS = 4_000;
/** Output kept per check of a sweep, in chars (the tail). */
const CHECK_OUTPUT_CHARS = 4_000;
/** How long to wait for the worker's stdout to drain after it exited, in ms. */
const DRAIN_TIMEOUT_MS = 2_000;
/**
 * How often a running worker's sandbox is asked whether it hit a limit, ms. A hit ends the attempt at once: a
 * fork bomb at `pids.max` leaves nothing able to fork (not even the worker's git) and its processes share the
 * sandbox's CPU quota with the worker, so waiting for the worker to notice took minutes.
 */
const LIMIT_POLL_MS = 1_000;
/** Largest branch bundle taken out of a sandbox by default, in bytes. */
const DEFAULT_MAX_BUNDLE_BYTES = 256 * 1024 * 1024;

/** Model endpoint settings for a sandbox's relay. `apiKey` (a per-task gateway token) stays outside. */
export interface SandboxLlm {
  /** OpenAI-compatible base URL, ending in `/v1`. */
  baseUrl: string;
  model: string;
  /** Max output tokens per model call. */
  maxTokens: number;
  /** Credential the relay adds to the sandbox's model calls; absent for keyless endpoints. Never sent inside. */
  apiKey?: string;
  /** The worker's reasoning switch (LLM_REASONING_WORKER), applied by the relay; undefined = model default. */
  reasoning?: boolean;
}

/** Options of one {@link SandboxProvider.run}. */
export interface SandboxRunOptions {
  /** Hard wall-clock limit of the worker process in ms, counted from its start. */
  timeoutMs: number;
  llm: SandboxLlm;
  /** Called for every progress line and the handoff line the worker prints (relay lines stay inside). */
  onLine(line: WorkerLine): void;
  /** Aborting terminates the sandbox like a timeout does (the result is a `failed` handoff). */
  signal?: AbortSignal;
}

/** What one sandbox run produced. */
export interface SandboxResult {
  /**
   * Always present: the worker's handoff (its `head` is the branch as pushed by the provider), or a synthetic
   * `failed` one (see `failedHandoff`).
   */
  handoff: Handoff;
  /** Provider-specific id of the sandbox. */
  sandboxId: string;
  /** The worker's exit code; null when it was killed or never started. */
  exitCode: number | null;
  /** True when the provider killed the sandbox at `timeoutMs` before the worker handed off. */
  timedOut: boolean;
  /** The limit the sandbox hit (e.g. `memory`), if any. */
  limitHit?: string;
}

/** One check of a sweep run in a sandbox. */
export interface CheckCommand {
  name: SweepCheck["name"];
  command: string;
  /** `host` only for dependency installs the user allows network for (SWEEP_INSTALL_NETWORK). */
  network?: "none" | "host";
}

/**
 * What {@link SandboxProvider.runChecks} runs. What holds `commit` in the provider's mirror is named either by
 * `branch` (`refs/heads/<branch>`) or by `ref`, a full ref (e.g. a merge queue candidate pushed to
 * `refs/longshot/candidates/<id>`): that ref is what a sandbox is seeded with.
 */
export type CheckRunSpec = CheckRunBase & ({ branch: string; ref?: never } | { ref: string; branch?: never });

/** The fields of a {@link CheckRunSpec} besides the ref. */
export interface CheckRunBase {
  /** The target repository (its mirror must already hold `commit`). */
  repo: string;
  commit: string;
  checks: CheckCommand[];
  /** Timeout of each check, in ms. */
  timeoutMs: number;
  /** Checks after which a failure stops the run (e.g. `install`). */
  stopAfterFailureOf?: Array<SweepCheck["name"]>;
  /** Labels for the sandbox (runId, purpose). */
  labels?: Record<string, string>;
  /**
   * Aborting kills the running check and terminates the sandbox; `runChecks` then rejects with the signal's
   * reason (e.g. a merge queue candidate that became useless while it was verified).
   */
  signal?: AbortSignal;
}

/**
 * Runs tasks and checks in sandboxes of one backend. `run` = one task attempt:
 *
 * 1. syncs the host-side mirror of `task.repo` and creates a sandbox with the configured limits;
 * 2. seeds `<workspace>/repo` with a clone of the mirror (no credentials, no writable remote) and writes the
 *    `WorkerInput` (no secrets) into the sandbox;
 * 3. starts the worker with a minimal environment (no key, no NATS settings): it checks out `task.branch`
 *    (or prepares the conflict-fix rebase) itself, and reaches the model only through the stdio relay, which
 *    adds the task's credential outside ({@link createModelRelay});
 * 4. streams its progress and handoff lines to `onLine`;
 * 5. on `timeoutMs` or `signal`: kills the sandbox, result = a `failed` handoff saying why;
 * 6. takes the branch out as a bundle (read through the sandbox), verifies it in the mirror
 *    (`transfer.fsckObjects`), and pushes `task.branch` to the target itself; the handoff's `head` is what
 *    was pushed;
 * 7. always terminates the sandbox.
 *
 * `run` does not reject for task-level problems (target unreachable, worker crash, timeout, abort, a bad
 * bundle): those resolve with a `failed` handoff, so the caller always has something to publish. It rejects
 * only when the backend itself cannot work (e.g. bubblewrap vanished); the caller should retry later.
 */
export interface SandboxProvider {
  /** `local`, `unsafe-local` or `modal`. */
  readonly name: string;
  readonly capabilities: SandboxCapabilities;
  run(task: Task, opts: SandboxRunOptions): Promise<SandboxResult>;
  /**
   * Runs check commands (`sh -c`) one after the other in a sandbox on a detached checkout of `commit`: no
   * network unless a check asks for `host`, the sandbox's limits, each check killed after `timeoutMs`.
   * Resolves with the checks run (a check in `stopAfterFailureOf` that fails ends the run early); rejects
   * with the signal's reason when `signal` aborts.
   */
  runChecks(spec: CheckRunSpec): Promise<SweepCheck[]>;
  /** The provider's host-side mirror of a target (sandboxes are seeded from it; checks need its commits). */
  mirror(source: string): RepoMirror;
  /** Terminates sandboxes a crashed predecessor left (see {@link SandboxBackend.reap}). */
  reap(): Promise<number>;
}

/** Options of {@link createSandboxProvider}. */
export interface SandboxProviderOptions {
  backend: SandboxBackend;
  /** Host-side mirrors of the targets (`createMirrors` of @longshot/git, with the push credentials). */
  mirrors: { get(source: string): RepoMirror };
  log: Logger;
  /** Limits of every sandbox (SANDBOX_MEMORY_MB, SANDBOX_CPU_CORES, SANDBOX_PIDS_MAX). */
  limits: BoxLimits;
  /** Harness the worker runs; default `pi`. */
  harness?: WorkerInput["harness"];
  /** Command template for the `command` harness (passed as env `WORKER_COMMAND`). */
  workerCommand?: string;
  /** Largest branch bundle accepted from a sandbox, in bytes; default 256 MiB. */
  maxBundleBytes?: number;
}

/** A sandbox id for a task attempt: `t-<task>-a<attempt>-<random>`, lowercased, at most 63 chars. */
function sandboxIdFor(prefix: string, name: string): string {
  const clean = name
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, 40);
  return `${prefix}-${clean}-${randomBytes(4).toString("hex")}`;
}

/** Builds the {@link SandboxProvider} over `options.backend`. */
export function createSandboxProvider(options: SandboxProviderOptions): SandboxProvider {
  const maxBundle = options.maxBundleBytes ?? DEFAULT_MAX_BUNDLE_BYTES;
  return {
    name: options.backend.name,
    capabilities: options.backend.capabilities,
    run: (task, opts) => runTask(options, maxBundle, task, opts),
    runChecks: (spec) => runChecks(options, spec),
    mirror: (source) => options.mirrors.get(source),
    reap: () => options.backend.reap(),
  };
}

async function runTask(
  options: SandboxProviderOptions,
  maxBundle: number,
  task: Task,
  opts: SandboxRunOptions,
): Promise<SandboxResult> {
  const startedAt = Date.now();
  const mirror = options.mirrors.get(task.repo);
  let log = options.log.child({ taskId: task.id, attempt: task.attempt });
  try {
    await mirror.sync();
  } catch (err) {
    log.warn({ err }, "target not reachable");
    const reason = `sandbox setup failed: cannot fetch ${task.repo}: ${(err as Error).message}`;
    return { handoff: failedHandoff(task, reason, 0), sandboxId: "", exitCode: null, timedOut: false };
  }
  const handle = await options.backend.create({
    id: sandboxIdFor("t", `${task.id}-a${task.attempt}`),
    labels: { runId: task.runId, taskId: task.id, attempt: String(task.attempt), purpose: "worker" },
    limits: options.limits,
    // The backend's own lifetime limit backs up the timer below (e.g. after a dispatcher crash on Modal).
    timeoutMs: opts.timeoutMs + 120_000,
  });
  log = log.child({ sandboxId: handle.id });
  let result: SandboxResult | undefined;
  let bundle: Buffer | undefined;
  try {
    let repoDir: string;
    try {
      const refs = [`refs/heads/${task.baseBranch}`];
      if (task.conflictBranch !== undefined) refs.push(`refs/heads/${task.conflictBranch}`);
      repoDir = await handle.seedRepo(mirror, { refs });
    } catch (err) {
      log.warn({ err }, "sandbox setup failed");
      const reason = `sandbox setup failed: ${(err as Error).message}`;
      return {
        handoff: failedHandoff(task, reason, Date.now() - startedAt),
        sandboxId: handle.id,
        exitCode: null,
        timedOut: false,
      };
    }
    const bundlePath = `${handle.workspace}/out/branch.bundle`;
    const input: WorkerInput = {
      task,
      repoDir,
      systemPromptPath: handle.worker.systemPrompt,
      llm: { model: opts.llm.model, maxTokens: opts.llm.maxTokens },
      timeoutMs: workerDeadlineMs(opts.timeoutMs),
      harness: options.harness ?? "pi",
      bundlePath,
    };
    const inputPath = `${handle.workspace}/input.json`;
    await handle.writeFile(inputPath, JSON.stringify(input, null, 2));
    result = await superviseWorker(handle, task, opts, inputPath, options, log, startedAt);
    // (A memory kill already dropped the branch: see superviseWorker.)
    if (result.handoff.head !== undefined) {
      try {
        bundle = await handle.readFile(bundlePath, maxBundle);
      } catch (err) {
        result = withoutBranch(result, `branch bundle not taken out: ${(err as Error).message}`);
      }
      if (bundle === undefined && result.handoff.head !== undefined) {
        result = withoutBranch(result, "the worker reported a head but wrote no branch bundle");
      }
    }
  } finally {
    await handle.terminate();
  }
  if (bundle !== undefined && result.handoff.head !== undefined) {
    result = await publishBranch(mirror, task, result, bundle, log);
  }
  log.info(
    {
      status: result.handoff.status,
      head: result.handoff.head,
      timedOut: result.timedOut,
      limitHit: result.limitHit,
      durationMs: Date.now() - startedAt,
    },
    "sandbox finished",
  );
  return result;
}

/** The result with the branch dropped: no `head`, status `failed`, `reason` first among the concerns. */
function withoutBranch(result: SandboxResult, reason: string): SandboxResult {
  const { head: _head, ...rest } = result.handoff;
  return { ...result, handoff: { ...rest, status: "failed", concerns: [reason, ...rest.concerns] } };
}

/**
 * Verifies the sandbox's bundle in the mirror and pushes `task.branch` to the target (forced: the branch
 * belongs to this task; base branches are refused by the mirror). The handoff's `head` becomes the commit
 * pushed; when the worker claimed another one, that is reported as a concern.
 */
async function publishBranch(
  mirror: RepoMirror,
  task: Task,
  result: SandboxResult,
  bundle: Buffer,
  log: Logger,
): Promise<SandboxResult> {
  const tmp = await mkdtemp(join(tmpdir(), "longshot-bundle-"));
  const name = `${task.id}-a${task.attempt}-${randomBytes(3).toString("hex")}`;
  try {
    const file = join(tmp, "branch.bundle");
    await writeFile(file, bundle);
    const sha = await mirror.importBundle(file, task.branch, name);
    await mirror.pushBranch(`refs/longshot/incoming/${name}`, task.branch, task.baseBranch);
    const claimed = result.handoff.head;
    const concerns =
      claimed === sha
        ? result.handoff.concerns
        : [...result.handoff.concerns, `the worker reported head ${claimed} but its bundle holds ${sha}`];
    log.info({ branch: task.branch, head: sha, bundleBytes: bundle.length }, "branch pushed");
    return { ...result, handoff: { ...result.handoff, head: sha, concerns } };
  } catch (err) {
    log.warn({ err }, "branch from the sandbox not pushed");
    return withoutBranch(result, `branch not pushed: ${(err as Error).message}`);
  } finally {
    await mirror.deleteRef(`refs/longshot/incoming/${name}`);
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Runs the worker in `handle`, relays its model calls, and turns the outcome into a result. */
async function superviseWorker(
  handle: SandboxHandle,
  task: Task,
  opts: SandboxRunOptions,
  inputPath: string,
  options: SandboxProviderOptions,
  log: Logger,
  startedAt: number,
): Promise<SandboxResult> {
  const proc = handle.exec({
    argv: [handle.worker.node, handle.worker.entry, inputPath],
    cwd: handle.workspace,
    env: workerEnv(
      process.env,
      handle.env,
      options.workerCommand !== undefined ? { WORKER_COMMAND: options.workerCommand } : {},
    ),
  });
  const relay = createModelRelay(
    {
      baseUrl: opts.llm.baseUrl,
      ...(opts.llm.apiKey ? { apiKey: opts.llm.apiKey } : {}),
      ...(opts.llm.reasoning !== undefined ? { reasoning: opts.llm.reasoning } : {}),
      runId: task.runId,
      taskId: task.id,
    },
    (line) => proc.write(`${JSON.stringify(line)}\n`),
  );
  log.info({ timeoutMs: opts.timeoutMs }, "sandbox started");

  let handoff: Handoff | undefined;
  /** The agent's counters as last reported (progress lines), for a handoff the worker never sent. */
  const seen = { toolCalls: 0, tokens: 0 };
  let stderrTail = "";
  let terminatedBy: "timeout" | "abort" | "limit" | undefined;
  let limitFirstHit: string | undefined;
  const terminate = (why: "timeout" | "abort" | "limit") => {
    if (terminatedBy !== undefined || handoff !== undefined) {
      proc.kill();
      return;
    }
    terminatedBy = why;
    log.warn({ why }, "terminating sandbox");
    proc.kill();
  };

  const lines = createInterface({ input: proc.stdout, crlfDelay: Infinity });
  const drained = new Promise<void>((resolve) => lines.once("close", resolve));
  lines.on("line", (text) => {
    const line = parseLine(text);
    if (line === undefined) {
      if (text.trim().length > 0) log.warn({ line: text.slice(0, 500) }, "non-protocol line from worker");
      return;
    }
    if (line.kind === "model.request") return relay.request(line);
    if (line.kind === "model.cancel") return relay.cancel(line.id);
    if (line.kind === "progress") {
      seen.toolCalls = Math.max(seen.toolCalls, line.toolCalls ?? 0);
      seen.tokens = Math.max(seen.tokens, line.tokens ?? 0);
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
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
  });

  const timer = setTimeout(() => terminate("timeout"), opts.timeoutMs);
  let polling = false;
  const watch = setInterval(() => {
    if (polling || terminatedBy !== undefined) return;
    polling = true;
    void handle
      .limitHit()
      .then((hit) => {
        if (hit === undefined || terminatedBy !== undefined || handoff !== undefined) return;
        limitFirstHit = hit;
        terminate("limit");
      })
      .catch((err: unknown) => log.warn({ err }, "limit check failed"))
      .finally(() => {
        polling = false;
      });
  }, LIMIT_POLL_MS);
  const onAbort = () => terminate("abort");
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener("abort", onAbort, { once: true });

  const exit = await proc.wait();
  clearTimeout(timer);
  clearInterval(watch);
  opts.signal?.removeEventListener("abort", onAbort);
  relay.close();
  await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, DRAIN_TIMEOUT_MS).unref())]);
  lines.close();
  const limitHit = limitFirstHit ?? (await handle.limitHit());

  const durationMs = Date.now() - startedAt;
  const exitCode = exit.code;
  log.info(
    {
      exitCode,
      signal: exit.signal,
      terminatedBy,
      handedOff: handoff !== undefined,
      limitHit,
      relay: relay.stats,
    },
    "worker exited",
  );
  const base = { sandboxId: handle.id, exitCode, ...(limitHit ? { limitHit } : {}) };
  if (terminatedBy !== undefined) {
    const reason =
      terminatedBy === "timeout"
        ? `sandbox timed out after ${Math.round(opts.timeoutMs / 1000)} s`
        : terminatedBy === "limit"
          ? `sandbox hit its ${limitHit} limit`
          : abortReason(opts.signal?.reason);
    return {
      ...base,
      handoff: failedHandoff(task, reason, durationMs, seen),
      timedOut: terminatedBy === "timeout",
    };
  }
  const limitReason = limitHit ? `sandbox hit its ${limitHit} limit` : undefined;
  if (handoff !== undefined) {
    if (limitReason === undefined) return { ...base, handoff, timedOut: false };
    // The worker handed off before the watch saw the limit (e.g. the agent's memory hog was killed and the
    // agent went on): a kill may have cut work short, so nothing of that attempt is trusted to land.
    return withoutBranch({ ...base, handoff, timedOut: false }, limitReason);
  }
  const why =
    limitReason ??
    (exit.signal === "spawn-error"
      ? "worker failed to start"
      : `worker exited with ${exitCode ?? exit.signal} without a handoff`);
  const tail = stderrTail.trim();
  return {
    ...base,
    handoff: failedHandoff(task, tail.length > 0 ? `${why}; stderr: ${tail}` : why, durationMs, seen),
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

async function runChecks(options: SandboxProviderOptions, spec: CheckRunSpec): Promise<SweepCheck[]> {
  const mirror = options.mirrors.get(spec.repo);
  const ref = spec.ref ?? `refs/heads/${spec.branch}`;
  const aborted = () => spec.signal?.reason ?? new Error("checks aborted");
  if (spec.signal?.aborted) throw aborted();
  const handle = await options.backend.create({
    id: sandboxIdFor("s", spec.commit.slice(0, 12)),
    labels: { purpose: "sweep", commit: spec.commit, ...spec.labels },
    limits: options.limits,
    timeoutMs: spec.timeoutMs * Math.max(1, spec.checks.length) + 120_000,
    installNetwork: spec.checks.some((c) => c.network === "host"),
  });
  const out: SweepCheck[] = [];
  // The abort's terminate is awaited below: a second terminate() returns at once, before the kill is done.
  let terminating: Promise<void> | undefined;
  const onAbort = () => {
    terminating = handle.terminate();
  };
  spec.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    if (spec.signal?.aborted) throw aborted();
    const repoDir = await handle.seedRepo(mirror, { detach: spec.commit, refs: [ref] });
    for (const check of spec.checks) {
      if (spec.signal?.aborted) throw aborted();
      const result = await runCheck(handle, repoDir, check, spec.timeoutMs);
      if (spec.signal?.aborted) throw aborted();
      out.push(result);
      if (!result.ok && spec.stopAfterFailureOf?.includes(check.name)) break;
    }
    const limit = await handle.limitHit();
    if (limit) {
      const last = out.at(-1);
      if (last) last.output = `${last.output}\n[sandbox hit its ${limit} limit]`.slice(-CHECK_OUTPUT_CHARS);
    }
    return out;
  } finally {
    spec.signal?.removeEventListener("abort", onAbort);
    await (terminating ?? handle.terminate());
  }
}

async function runCheck(
  handle: SandboxHandle,
  repoDir: string,
  check: CheckCommand,
  timeoutMs: number,
): Promise<SweepCheck> {
  const started = Date.now();
  const proc = handle.exec({
    argv: ["sh", "-c", check.command],
    cwd: repoDir,
    env: { ...handle.env, CI: "true", LANG: "C.UTF-8" },
    network: check.network ?? "none",
  });
  let out = "";
  const onData = (d: Buffer) => {
    out = (out + d.toString()).slice(-CHECK_OUTPUT_CHARS * 4);
  };
  proc.stdout.on("data", onData);
  proc.stderr.on("data", onData);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill();
  }, timeoutMs);
  const { code } = await proc.wait();
  clearTimeout(timer);
  const output = (timedOut ? `${out}\n[timed out after ${timeoutMs} ms]` : out).slice(-CHECK_OUTPUT_CHARS);
  return {
    name: check.name,
    command: check.command,
    ok: code === 0 && !timedOut,
    exitCode: code,
    output,
    durationMs: Date.now() - started,
  };
}
