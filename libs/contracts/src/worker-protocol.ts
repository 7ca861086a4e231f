import { z } from "zod";
import { Handoff, Task } from "./task.ts";

/**
 * The sandbox contract between a sandbox provider (dispatcher side) and the worker process inside it.
 * In: a JSON file (`WorkerInput`) whose path is the worker's only argument; the model key arrives in the
 * environment variable `LONGSHOT_LLM_API_KEY` (never in the file, never on argv).
 * Out: NDJSON on stdout, one `WorkerLine` per line; the last `handoff` line is the result.
 */
export const WorkerInput = z.object({
  task: Task,
  /** Working copy of the target, already on `task.branch`, with `origin` pointing at the clone source. */
  repoDir: z.string(),
  /** Absolute path of the worker system prompt (prompts/worker.md). */
  systemPromptPath: z.string(),
  llm: z.object({ baseUrl: z.string(), model: z.string(), maxTokens: z.number().int().positive() }),
  /** Hard deadline for the agent in ms; the provider kills the sandbox a little after it. */
  timeoutMs: z.number().int().positive(),
  /** Harness to run: `pi` (default) or `command`. */
  harness: z.enum(["pi", "command"]).default("pi"),
});
export type WorkerInput = z.infer<typeof WorkerInput>;

export const WorkerLine = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("progress"),
    message: z.string(),
    toolCalls: z.number().int().optional(),
    tokens: z.number().int().optional(),
  }),
  z.object({ kind: z.literal("handoff"), handoff: Handoff }),
]);
export type WorkerLine = z.infer<typeof WorkerLine>;
