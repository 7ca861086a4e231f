import type { Handoff, Task, WorkerLine } from "@longshot/contracts";

/** Model endpoint settings handed to a sandbox. `apiKey` (a per-task gateway token) travels only in env. */
export interface SandboxLlm {
  /** OpenAI-compatible base URL, ending in `/v1`. */
  baseUrl: string;
  model: string;
  /** Max output tokens per model call. */
  maxTokens: number;
  /** Key for the endpoint; absent/empty for keyless local servers. Never written to disk, argv or logs. */
  apiKey?: string;
}

/** Options of one {@link SandboxProvider.run}. */
export interface SandboxRunOptions {
  /** Hard wall-clock limit of the worker process in ms, counted from its start. */
  timeoutMs: number;
  llm: SandboxLlm;
  /** Called for every valid `WorkerLine` the worker prints (progress lines and the handoff line). */
  onLine(line: WorkerLine): void;
  /** Aborting terminates the sandbox like a timeout does (the result is a `failed` handoff). */
  signal?: AbortSignal;
}

/** What one sandbox run produced. */
export interface SandboxResult {
  /** Always present: the worker's handoff, or a synthetic `failed` one (see `failedHandoff`). */
  handoff: Handoff;
  /** Provider-specific id of the sandbox (local: the temp directory name; modal: the sandbox id). */
  sandboxId: string;
  /** The worker's exit code; null when it was killed by a signal or never started. */
  exitCode: number | null;
  /** True when the provider killed the sandbox at `timeoutMs` before the worker handed off. */
  timedOut: boolean;
}

/**
 * The contract every sandbox provider (`local`, `modal`, `docker`) implements. One `run` = one task attempt:
 *
 * 1. create an isolated workspace with a clone of `task.repo` checked out on a new `task.branch` started
 *    from `origin/<task.baseBranch>`; for conflict-fix tasks (`task.conflictBranch` set) started from
 *    `origin/<conflictBranch>` instead and then `git rebase origin/<baseBranch>`, leaving a stopped rebase
 *    with its conflicts in the tree (see `prepareConflictFix`);
 * 2. start the worker (`services/worker/src/main.ts <input.json>`, a `WorkerInput` without secrets; `llm` is
 *    the dispatcher's setting as given, the worker itself applies `task.model`) with a
 *    minimal environment: the model key only as `LONGSHOT_LLM_API_KEY`, never provider keys or NATS
 *    credentials;
 * 3. stream its stdout `WorkerLine`s to `onLine`, keeping the last handoff;
 * 4. on `timeoutMs` or `signal`: terminate the worker and everything it started (SIGTERM, then SIGKILL
 *    after a grace period), result = a `failed` handoff saying why;
 * 5. always destroy the workspace and every process of the sandbox, also after a crash or an abort.
 *
 * `run` does not reject for task-level problems (clone failure, worker crash, timeout, abort): those resolve
 * with a `failed` handoff, so the caller always has something to publish. It rejects only when the provider
 * itself cannot work (e.g. its temp root is not writable); the caller should then retry later.
 */
export interface SandboxProvider {
  /** Provider name, e.g. `local`. */
  readonly name: string;
  run(task: Task, opts: SandboxRunOptions): Promise<SandboxResult>;
}
