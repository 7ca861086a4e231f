import type { Bus } from "@longshot/bus";
import type { AcceptedRun, RequestError } from "@longshot/contracts";
import type { JsMsg } from "@nats-io/jetstream";
import { checkRepo } from "../adapters/repo.ts";
import {
  fallbackRunId,
  generatedRunId,
  parseRequest,
  type RawRequest,
  requestConflicts,
  requestRunId,
  runStateProblem,
} from "../domain/request.ts";
import type { Planner } from "../planner.ts";

/** nats-server's default `max_payload`, bytes: assumed when the server did not say. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * Reads a raw `longshot.request` message. Never throws: validation happens in the handler, so every
 * problem becomes a `run.rejected` the sender can see.
 */
export function decodeRequest(msg: JsMsg): RawRequest {
  let body: RawRequest["body"];
  try {
    body = { json: true, value: msg.json() };
  } catch {
    body = { json: false };
  }
  return {
    bytes: msg.data.length,
    body,
    msgId: msg.headers?.get("Nats-Msg-Id") || undefined,
    seq: msg.seq,
    storedAtNs: msg.info.timestampNanos,
  };
}

/**
 * Handles `longshot.request`: validates the public payload (size limits, schema, the state fits one KV
 * value, the repository and base branch exist), answers `run.rejected` with every problem, or starts the
 * run (`run.accepted`). A run id that names an existing run: the same request is answered idempotently
 * (`run.accepted` again, no second run); a different one is rejected because the id is taken. Rejections go
 * to the run id the request names, or `request-<seq>` (see domain/request.ts), and carry `requestSeq`.
 */
export function createRequestHandler(deps: {
  bus: Bus;
  planner: Planner;
  defaultBaseBranch: string;
  defaultMaxWorkers: number;
}) {
  return async (raw: RawRequest): Promise<void> => {
    const named = requestRunId(raw);
    const reject = (errors: RequestError[]) => {
      const runId = named ?? fallbackRunId(raw);
      return deps.bus.publishEvent(
        "run.rejected",
        runId,
        { errors, requestSeq: raw.seq },
        { id: `run-rejected-${runId}-${raw.seq}`, correlationId: raw.msgId ?? runId },
      );
    };
    const parsed = parseRequest(raw);
    if (!parsed.ok) {
      await reject(parsed.errors);
      return;
    }
    const req = parsed.request;
    const run: AcceptedRun = {
      runId: named ?? generatedRunId(raw),
      prompt: req.prompt,
      repo: req.repo,
      baseBranch: req.baseBranch ?? deps.defaultBaseBranch,
      maxWorkers: req.maxWorkers ?? deps.defaultMaxWorkers,
    };
    const tooBig = runStateProblem(run, deps.bus.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD);
    if (tooBig) {
      await reject([{ path: "prompt", message: tooBig }]);
      return;
    }
    const sameRequest = (stored: AcceptedRun) => requestConflicts(stored, req).length === 0;
    const taken = (stored: AcceptedRun) =>
      reject([
        {
          path: "runId",
          message: `run id ${run.runId} is taken by another request (different ${requestConflicts(stored, req).join(", ")})`,
        },
      ]);
    const existing = await deps.planner.acceptedRun(run.runId);
    if (existing && !sameRequest(existing)) {
      await taken(existing);
      return;
    }
    // The same request again (or a redelivery) skips the repository check: it passed before.
    const problem = existing ? undefined : await checkRepo(run.repo, run.baseBranch);
    if (problem) {
      await reject([{ path: "repo", message: problem }]);
      return;
    }
    const started = await deps.planner.start(run, sameRequest);
    if (started.status === "taken") await taken(started.run);
  };
}
