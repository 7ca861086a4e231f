import { z } from "zod";
import { Handoff, Task } from "./task.ts";

/**
 * The sandbox contract between a sandbox provider (dispatcher side, outside) and the worker process inside
 * the sandbox. The sandbox holds no secret and has no network: the worker reaches the model only through the
 * provider, over its own stdio (the model relay below), and hands its branch back as a git bundle file.
 *
 * In: a JSON file (`WorkerInput`) whose path is the worker's only argument, plus `RelayLine`s on stdin.
 * Out: NDJSON on stdout, one `WorkerLine` per line; the last `handoff` line is the result; the branch is in
 * the bundle file named by `bundlePath` (absent when nothing was committed).
 */
export const WorkerInput = z.object({
  task: Task,
  /**
   * Working copy of the target inside the sandbox, a clone whose `refs/remotes/origin/*` are the target's
   * branches at dispatch time. The worker itself checks out `task.branch` (or prepares a conflict-fix rebase).
   */
  repoDir: z.string(),
  /** Absolute path of the worker system prompt (prompts/worker.md) inside the sandbox. */
  systemPromptPath: z.string(),
  /** The model the agent uses and its output cap per call (tokens); calls go through the model relay. */
  llm: z.object({ model: z.string(), maxTokens: z.number().int().positive() }),
  /** Hard deadline for the agent in ms; the provider kills the sandbox a little after it. */
  timeoutMs: z.number().int().positive(),
  /** Harness to run: `pi` (default) or `command` (`WORKER_COMMAND` in the environment). */
  harness: z.enum(["pi", "command"]).default("pi"),
  /** Where the worker writes `git bundle` of `task.branch` (prerequisite: the base branch), in the sandbox. */
  bundlePath: z.string(),
});
export type WorkerInput = z.infer<typeof WorkerInput>;

/** Header names a relayed model request may carry (everything else is dropped by the provider). */
export const RELAYED_REQUEST_HEADERS = ["content-type", "accept", "x-longshot-task-id", "x-longshot-run-id"];

/**
 * A model call the worker relays to the provider (`model.request`), or the cancellation of one the agent
 * gave up on (`model.cancel`). `path` is the HTTP path below the OpenAI-compatible base, e.g.
 * `/v1/chat/completions`; `body` is the request body as UTF-8 text.
 */
export const ModelRequestLine = z.object({
  kind: z.literal("model.request"),
  id: z.string().min(1).max(64),
  method: z.enum(["GET", "POST"]),
  path: z.string().min(1).max(256),
  headers: z.record(z.string(), z.string()),
  body: z.string(),
});
export type ModelRequestLine = z.infer<typeof ModelRequestLine>;

export const WorkerLine = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("progress"),
    message: z.string(),
    /** A one-line preview of a tool call's arguments (the bash command, the file path), ≤ 200 chars. */
    detail: z.string().max(500).optional(),
    toolCalls: z.number().int().optional(),
    tokens: z.number().int().optional(),
  }),
  z.object({ kind: z.literal("handoff"), handoff: Handoff }),
  ModelRequestLine,
  z.object({ kind: z.literal("model.cancel"), id: z.string().min(1).max(64) }),
]);
export type WorkerLine = z.infer<typeof WorkerLine>;

/**
 * What the provider writes to the worker's stdin, answering `model.request` lines: the response head, its
 * body in UTF-8 text chunks (server-sent events arrive as they stream), then `model.end` (with `error` when
 * the call failed before or during the body).
 */
export const RelayLine = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("model.response"),
    id: z.string(),
    status: z.number().int(),
    headers: z.record(z.string(), z.string()),
  }),
  z.object({ kind: z.literal("model.chunk"), id: z.string(), data: z.string() }),
  z.object({ kind: z.literal("model.end"), id: z.string(), error: z.string().optional() }),
]);
export type RelayLine = z.infer<typeof RelayLine>;
