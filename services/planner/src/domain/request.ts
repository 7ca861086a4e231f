import { createHash } from "node:crypto";
import {
  type AcceptedRun,
  MAX_REQUEST_BYTES,
  type RequestError,
  RunId,
  RunRequest,
  utf8Bytes,
} from "@longshot/contracts";

/** A `longshot.request` message as the request handler sees it (built by `decodeRequest`). */
export interface RawRequest {
  /** Size of the message body, bytes. */
  bytes: number;
  /** The body parsed as JSON, or `{ json: false }` when it does not parse. */
  body: { json: true; value: unknown } | { json: false };
  /** The publisher's `Nats-Msg-Id` header, when it set one. */
  msgId?: string | undefined;
  /** Sequence of the message in the REQUESTS stream: the `seq` of the ack its publisher got. */
  seq: number;
  /** When the stream stored it, ns since the epoch (the same on every redelivery). */
  storedAtNs: number;
}

/**
 * Room a run's state needs beside twice the request (the request is stored in the state and repeated in the
 * first message to the model), bytes: the system prompt (~9 KB), the repository documents as capped in the
 * first message (≤ 60k chars), the file tree (≤ 300 paths), 40 commits and the model's first reply.
 */
export const RUN_STATE_RESERVE_BYTES = 256 * 1024;

/**
 * The run id a request names (public contract): the body's `runId` when it is a valid run id, otherwise the
 * `Nats-Msg-Id` header when that is a valid run id, otherwise none. Its events, a rejection included, go to
 * `longshot.event.<id>.>`. Without one, a rejection goes to {@link fallbackRunId} and an accepted run gets
 * {@link generatedRunId} (announced in `run.accepted`).
 */
export function requestRunId(raw: RawRequest): string | undefined {
  const bodyId = raw.body.json ? (raw.body.value as { runId?: unknown } | null)?.runId : undefined;
  if (RunId.safeParse(bodyId).success) return bodyId as string;
  if (RunId.safeParse(raw.msgId).success) return raw.msgId;
  return undefined;
}

/**
 * Where a request that names no usable id is rejected: `request-<seq>`, with the REQUESTS stream sequence of
 * the message (the `seq` in the publisher's ack, e.g. what `nats req longshot.request …` prints).
 */
export const fallbackRunId = (raw: Pick<RawRequest, "seq">): string => `request-${raw.seq}`;

/**
 * The run id of an accepted request that names none: `run-` + 12 hex chars of a hash of its stream sequence
 * and store time, so every redelivery of the message names the same run (no second run after a crash).
 */
export function generatedRunId(raw: Pick<RawRequest, "seq" | "storedAtNs">): string {
  return `run-${createHash("sha256").update(`${raw.seq}:${raw.storedAtNs}`).digest("hex").slice(0, 12)}`;
}

/**
 * Validates a request against the public contract: the body ≤ `MAX_REQUEST_BYTES` (1 MiB), JSON, and
 * {@link RunRequest} (prompt ≤ 256 KiB, `baseBranch` by git's ref-format rules, …). Returns every problem
 * found, or the parsed request.
 */
export function parseRequest(
  raw: Pick<RawRequest, "bytes" | "body">,
): { ok: true; request: RunRequest } | { ok: false; errors: RequestError[] } {
  const errors: RequestError[] = [];
  if (raw.bytes > MAX_REQUEST_BYTES)
    errors.push({
      path: "",
      message: `request is ${raw.bytes} bytes; at most ${MAX_REQUEST_BYTES} bytes (1 MiB) are accepted`,
    });
  if (!raw.body.json) return { ok: false, errors: [...errors, { path: "", message: "payload is not JSON" }] };
  const parsed = RunRequest.safeParse(raw.body.value);
  if (!parsed.success)
    errors.push(...parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })));
  return errors.length > 0 || !parsed.success ? { ok: false, errors } : { ok: true, request: parsed.data };
}

/**
 * Whether the state of `run` could not be stored: the state holds the request and its first model message
 * repeats it, so it needs about 2 × the request's JSON + {@link RUN_STATE_RESERVE_BYTES}, and one KV value is
 * at most the server's `max_payload`. Returns the reason, or `undefined` when it fits.
 */
export function runStateProblem(run: AcceptedRun, maxPayloadBytes: number): string | undefined {
  const needed = 2 * utf8Bytes(JSON.stringify(run)) + RUN_STATE_RESERVE_BYTES;
  return needed > maxPayloadBytes
    ? `the run's state would need about ${needed} bytes; this cluster stores at most ${maxPayloadBytes} bytes per value (max_payload)`
    : undefined;
}

/**
 * The fields in which `request` differs from the run `stored` under the same run id: `prompt` and `repo`
 * always count; `baseBranch` and `maxWorkers` only when the request sets them (defaults may have changed
 * since). Empty = the same request, which is answered idempotently.
 */
export function requestConflicts(stored: AcceptedRun, request: RunRequest): string[] {
  const differs: string[] = [];
  if (request.prompt !== stored.prompt) differs.push("prompt");
  if (request.repo !== stored.repo) differs.push("repo");
  if (request.baseBranch !== undefined && request.baseBranch !== stored.baseBranch)
    differs.push("baseBranch");
  if (request.maxWorkers !== undefined && request.maxWorkers !== stored.maxWorkers)
    differs.push("maxWorkers");
  return differs;
}
