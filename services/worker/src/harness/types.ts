import type { WorkerInput } from "@longshot/contracts";
import type { AgentOutcome } from "../domain/handoff.ts";

/** A progress report from a harness: a short message, an optional detail, running counters (tool calls, tokens). */
export interface HarnessProgress {
  message: string;
  /** A one-line preview of a tool call's arguments (see `toolCallDetail`). */
  detail?: string;
  toolCalls?: number;
  tokens?: number;
}

/** What a harness returns: the agent's final text, token and tool-call counts, and why it stopped. */
export type HarnessResult = AgentOutcome;

/**
 * A coding-agent harness run inside the sandbox: `pi` (the Pi SDK, default) or `command` (any CLI agent).
 * `run` works in `input.repoDir` with `prompt` (the task prompt, see `buildTaskPrompt`) and resolves when
 * the agent stops. It must not throw
 * for agent-level failures (model errors, a failing command): those come back as `stopReason: "error"`
 * with `errorMessage`. When `signal` aborts (deadline or SIGTERM) it stops the agent and its child
 * processes promptly and resolves with `stopReason: "aborted"`.
 */
export interface Harness {
  run(
    input: WorkerInput,
    prompt: string,
    onProgress: (p: HarnessProgress) => void,
    signal: AbortSignal,
  ): Promise<HarnessResult>;
}
