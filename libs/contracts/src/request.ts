import { z } from "zod";
import { RunId } from "./ids.ts";

/**
 * The public entry: a plain JSON payload published on `longshot.request` (no envelope), e.g.
 * `nats pub longshot.request '{"prompt":"…","repo":"/path/to/repo"}'`. Version 1 of the public contract.
 */
export const RunRequest = z.strictObject({
  prompt: z.string().trim().min(1, "prompt must not be empty"),
  repo: z.string().trim().min(1, "repo must be a local path or a git URL"),
  runId: RunId.optional(),
  baseBranch: z
    .string()
    .regex(/^[A-Za-z0-9._/-]+$/, "baseBranch must be a valid branch name")
    .optional(),
  maxWorkers: z.number().int().min(1).max(10_000).optional(),
});
export type RunRequest = z.infer<typeof RunRequest>;

/** A request as understood: every default filled in. Payload of `run.accepted`. */
export const AcceptedRun = z.object({
  runId: RunId,
  prompt: z.string(),
  repo: z.string(),
  baseBranch: z.string(),
  maxWorkers: z.number().int().min(1),
});
export type AcceptedRun = z.infer<typeof AcceptedRun>;

/** One validation problem of a rejected request: `path` is dotted (`""` for the whole payload). */
export const RequestError = z.object({ path: z.string(), message: z.string() });
export type RequestError = z.infer<typeof RequestError>;
