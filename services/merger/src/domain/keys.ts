import type { Handoff } from "@longshot/contracts";

/**
 * The merged-record key of a handoff: `<runId>.<taskId>` (both are dot-free ids, so this is a valid
 * NATS KV key). One task merges at most once, whatever the number of deliveries of its handoff.
 */
export function mergedRecordKey(handoff: Pick<Handoff, "runId" | "taskId">): string {
  return `${handoff.runId}.${handoff.taskId}`;
}

/** The branch a handoff asks to merge: the pushed branch it reports, else its task's branch. */
export function branchOf(handoff: Handoff): string {
  return handoff.branch.length > 0 ? handoff.branch : handoff.task.branch;
}

/**
 * The serialization key of a target repository: merges into the same key run one at a time. Trailing
 * slashes are dropped so `/srv/repo/` and `/srv/repo` are the same repository.
 */
export function repoKey(repo: string): string {
  const trimmed = repo.replace(/\/+$/, "");
  return trimmed.length > 0 ? trimmed : repo;
}
