import type { Handoff } from "@longshot/contracts";

/**
 * What the merge queue does with a handoff. `skip`: nothing to merge (failed/blocked, nothing pushed, no
 * files changed). `already-merged`: this task's work is already on the base branch (a redelivery).
 * `merge`: land the branch.
 */
export type MergeDecision =
  | { kind: "merge" }
  | { kind: "skip"; reason: string }
  | { kind: "already-merged"; reason: string };

/**
 * What is known about a handoff beyond its payload. `recordedSha`: the base sha recorded when this task
 * was merged before (from the merged-record store), if any. `headOnBase`: whether the handoff's `head`
 * is already an ancestor of the base branch tip (unknown until the repository was fetched).
 */
export interface MergeFacts {
  recordedSha?: string | undefined;
  headOnBase?: boolean | undefined;
}

/**
 * Decides what to do with a handoff, given what is known so far. Pure. `partial` handoffs that pushed
 * commits are merged (their work is useful and the planner re-plans the rest); `failed` and `blocked`
 * ones are skipped.
 */
export function decide(handoff: Handoff, facts: MergeFacts = {}): MergeDecision {
  if (handoff.status === "failed" || handoff.status === "blocked") {
    return { kind: "skip", reason: `handoff status is ${handoff.status}` };
  }
  if (!handoff.head) return { kind: "skip", reason: "nothing was pushed (handoff has no head)" };
  if (handoff.filesChanged.length === 0) return { kind: "skip", reason: "no files changed" };
  if (facts.recordedSha) {
    return {
      kind: "already-merged",
      reason: `task already merged (base at ${facts.recordedSha.slice(0, 12)})`,
    };
  }
  if (facts.headOnBase) {
    return {
      kind: "already-merged",
      reason: `head ${handoff.head.slice(0, 12)} is already on the base branch`,
    };
  }
  return { kind: "merge" };
}
