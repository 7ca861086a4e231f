import type { Bus } from "@longshot/bus";
import { type AcceptedRun, newId, RunId, RunRequest } from "@longshot/contracts";
import type { JsMsg } from "@nats-io/jetstream";
import { checkRepo } from "../adapters/repo.ts";
import type { Planner } from "../planner.ts";

/** A raw `longshot.request` payload: anything; validation happens in the handler so errors become events. */
export function decodeRequest(msg: JsMsg): unknown {
  try {
    return msg.json();
  } catch {
    return { __notJson: msg.string().slice(0, 200) };
  }
}

/**
 * Handles `longshot.request`: validates the public payload (and that the repository and base branch exist),
 * answers `run.rejected` with every problem, or starts the run (`run.accepted`). Idempotent per run id.
 */
export function createRequestHandler(deps: {
  bus: Bus;
  planner: Planner;
  defaultBaseBranch: string;
  defaultMaxWorkers: number;
}) {
  return async (raw: unknown): Promise<void> => {
    const maybeId = (raw as { runId?: unknown } | null)?.runId;
    const runId = RunId.safeParse(maybeId).success ? (maybeId as string) : newId("run");
    const reject = (errors: { path: string; message: string }[]) =>
      deps.bus.publishEvent("run.rejected", runId, { errors }, { id: `run-rejected-${runId}` });
    if (raw && typeof raw === "object" && "__notJson" in raw) {
      await reject([{ path: "", message: "payload is not JSON" }]);
      return;
    }
    const parsed = RunRequest.safeParse(raw);
    if (!parsed.success) {
      await reject(parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })));
      return;
    }
    const run: AcceptedRun = {
      runId,
      prompt: parsed.data.prompt,
      repo: parsed.data.repo,
      baseBranch: parsed.data.baseBranch ?? deps.defaultBaseBranch,
      maxWorkers: parsed.data.maxWorkers ?? deps.defaultMaxWorkers,
    };
    // A redelivery of an accepted request skips the repository check (it passed before).
    const problem = (await deps.planner.known(runId)) ? undefined : await checkRepo(run.repo, run.baseBranch);
    if (problem) {
      await reject([{ path: "repo", message: problem }]);
      return;
    }
    await deps.planner.start(run);
  };
}
