import { z } from "zod";
import { RunId } from "./ids.ts";

/** Largest accepted `prompt`, in UTF-8 bytes (256 KiB). */
export const MAX_PROMPT_BYTES = 256 * 1024;
/** Largest accepted `longshot.request` message body, in bytes (1 MiB), whatever its content. */
export const MAX_REQUEST_BYTES = 1024 * 1024;
/** Longest accepted `repo` (a local path or a git URL), in characters. */
export const MAX_REPO_CHARS = 4096;
/** Longest accepted `baseBranch`, in UTF-8 bytes (a ref is a file name on most filesystems: 255 bytes). */
export const MAX_BRANCH_BYTES = 255;

/** Length of `s` encoded as UTF-8, in bytes. */
export function utf8Bytes(s: string): number {
  return new TextEncoder().encode(s).byteLength;
}

/** Characters git forbids anywhere in a ref name besides control characters (`git help check-ref-format`). */
const FORBIDDEN_REF_CHARS = " ~^:?*[\\";

/**
 * Why `name` is not a valid branch name, or `undefined` when it is. The rules are git's ref-format rules
 * (`git help check-ref-format`, rules 1 and 3–10) applied as `git check-ref-format --branch` applies them to
 * `refs/heads/<name>`: no component starting with `.` or ending with `.lock`; no `..`; no control
 * characters, space, `~`, `^`, `:`, `?`, `*`, `[` or `\`; no leading or trailing `/` and no `//`; no trailing
 * `.`; no `@{`; not `@` (rule 9; in revision syntax it means HEAD) and not `HEAD`; no leading `-` (`--branch`).
 * Also at most {@link MAX_BRANCH_BYTES} UTF-8 bytes. Pure: git itself is not consulted.
 */
export function branchNameProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  if (utf8Bytes(name) > MAX_BRANCH_BYTES) return `must be at most ${MAX_BRANCH_BYTES} bytes`;
  if (name.startsWith("-")) return "must not start with '-'";
  if (name === "@" || name === "HEAD") return `must not be '${name}'`;
  for (const ch of name) {
    const code = ch.charCodeAt(0);
    if (code < 0x20 || code === 0x7f) return "must not contain control characters";
    if (FORBIDDEN_REF_CHARS.includes(ch)) return `must not contain ${ch === " " ? "a space" : `'${ch}'`}`;
  }
  if (name.includes("..")) return "must not contain '..'";
  if (name.includes("@{")) return "must not contain '@{'";
  if (name.startsWith("/") || name.endsWith("/")) return "must not start or end with '/'";
  if (name.includes("//")) return "must not contain '//'";
  if (name.endsWith(".")) return "must not end with '.'";
  for (const part of name.split("/")) {
    if (part.startsWith(".")) return "no '/'-separated part may start with '.'";
    if (part.endsWith(".lock")) return "no '/'-separated part may end with '.lock'";
  }
  return undefined;
}

/**
 * The public entry: a plain JSON payload published on `longshot.request` (no envelope), e.g.
 * `nats pub longshot.request '{"prompt":"…","repo":"/path/to/repo"}'`. Version 1 of the public contract.
 * Limits: `prompt` ≤ {@link MAX_PROMPT_BYTES} UTF-8 bytes, `repo` ≤ {@link MAX_REPO_CHARS} characters,
 * `baseBranch` a valid branch name ({@link branchNameProblem}); the whole message ≤ {@link MAX_REQUEST_BYTES}
 * (checked by the planner on the raw bytes).
 */
export const RunRequest = z.strictObject({
  prompt: z
    .string()
    .trim()
    .min(1, "prompt must not be empty")
    .superRefine((s, ctx) => {
      const bytes = utf8Bytes(s);
      if (bytes > MAX_PROMPT_BYTES)
        ctx.addIssue({
          code: "custom",
          message: `prompt is ${bytes} bytes; at most ${MAX_PROMPT_BYTES} bytes (256 KiB, UTF-8) are accepted`,
        });
    }),
  repo: z
    .string()
    .trim()
    .min(1, "repo must be a local path or a git URL")
    .max(MAX_REPO_CHARS, `repo must be at most ${MAX_REPO_CHARS} characters`),
  runId: RunId.optional(),
  baseBranch: z
    .string()
    .superRefine((s, ctx) => {
      const problem = branchNameProblem(s);
      if (problem)
        ctx.addIssue({
          code: "custom",
          message: `baseBranch ${problem} (git check-ref-format rules)`,
        });
    })
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

/**
 * Payload of `run.rejected`. `requestSeq` is the REQUESTS stream sequence of the rejected request (the
 * `seq` of the publish ack a publisher gets, e.g. from `nats req longshot.request …`), so a caller can tell
 * which of its requests was rejected.
 */
export const RunRejected = z.object({
  errors: z.array(RequestError),
  requestSeq: z.number().int().min(1).optional(),
});
export type RunRejected = z.infer<typeof RunRejected>;

/**
 * The public cancellation: plain JSON on `longshot.cancel`, e.g.
 * `nats pub longshot.cancel '{"runId":"run-1","reason":"wrong repo"}'`. The planner stops planning, the
 * dispatcher terminates the run's sandboxes and starts none, and the run ends with `run.cancelled` then
 * `run.completed` `{status: "cancelled", reason}`. Cancelling a finished or unknown run does nothing.
 * `by` names who asked (`cli`, `monitor`, a user), for the record.
 */
export const CancelRequest = z.strictObject({
  runId: RunId,
  reason: z.string().trim().min(1).max(500).default("cancelled by request"),
  by: z.string().trim().min(1).max(100).optional(),
});
export type CancelRequest = z.infer<typeof CancelRequest>;
