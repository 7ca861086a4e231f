import { type AcceptedRun, emptyMetrics, type Handoff } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import {
  applyHandoff,
  applyMerge,
  applyPlan,
  buildTasks,
  initialRunState,
  type RunPolicy,
  type RunState,
  summarize,
  tasksToPublish,
  unmergedWork,
} from "../src/domain/run.ts";

// A red candidate does not land (#12): the merge queue's `merge.rejected` reaches the planner, which treats it
// like a failed attempt.

const RUN: AcceptedRun = {
  runId: "run-1",
  prompt: "p",
  repo: "/tmp/target",
  baseBranch: "main",
  maxWorkers: 4,
};
const POLICY: RunPolicy = {
  branchPrefix: "worker/",
  fallbackModel: "fallback-model",
  maxConflictFixes: 30,
  finalizationMaxAttempts: 3,
  finalizationTimeoutMs: 60_000,
};
const DETAIL =
  "check test failed on the base with this branch applied (`npm run test`, exit 1): ✖ validation rejects bad input";

/** A run with task `email` planned, published and handed off `complete` (attempt `attempt`). */
function given(): RunState {
  const s = initialRunState(RUN, 0);
  const { tasks } = buildTasks(
    s,
    [
      {
        id: "email",
        description: "Make email validation strict",
        scope: ["src/validate.ts"],
        acceptance: "tests pass",
      },
    ],
    { branchPrefix: "worker/" },
  );
  const planned = applyPlan(s, [], tasks, 0);
  return { ...planned, tasks: { ...planned.tasks, email: { ...planned.tasks.email!, published: true } } };
}

function handoff(s: RunState, id: string): Handoff {
  const task = s.tasks[id]!.task;
  return {
    taskId: id,
    runId: RUN.runId,
    status: "complete",
    summary: `did ${id}`,
    filesChanged: task.scope,
    concerns: [],
    suggestions: [],
    metrics: emptyMetrics(),
    branch: task.branch,
    head: "0123456789abcdef0123456789abcdef01234567",
    task,
  };
}

const rejected = (s: RunState, id: string) =>
  applyMerge(
    s,
    { taskId: id, attempt: s.tasks[id]!.task.attempt, outcome: "rejected", detail: DETAIL },
    POLICY,
  );

describe("merge.rejected in the planner", () => {
  it("given attempt 1 rejected by the merge queue, then it is retried as attempt 2 on the fallback model with the failure as context", () => {
    let s = applyHandoff(given(), handoff(given(), "email"), POLICY);
    s = rejected(s, "email");
    const rec = s.tasks.email!;
    expect(rec.task.attempt).toBe(2);
    expect(rec.task.model).toBe("fallback-model");
    expect(rec.task.context).toContain("The merge queue rejected attempt 1");
    expect(rec.task.context).toContain(DETAIL);
    expect(rec.published).toBe(false);
    expect(rec.handoff).toBeUndefined();
    expect(rec.merge).toBeUndefined();
    expect(rec.previous?.concerns.join(" ")).toContain("rejected by the merge queue");
    expect(tasksToPublish(s).map((t) => [t.id, t.attempt])).toEqual([["email", 2]]);
    // A late or repeated rejection of attempt 1 changes nothing.
    expect(applyMerge(s, { taskId: "email", attempt: 1, outcome: "rejected", detail: DETAIL }, POLICY)).toBe(
      s,
    );
  });

  it("given attempt 2 rejected too, then the merge failed and one fix task starts from its branch rebased on the base", () => {
    let s = applyHandoff(given(), handoff(given(), "email"), POLICY);
    s = rejected(s, "email");
    s = { ...s, tasks: { ...s.tasks, email: { ...s.tasks.email!, published: true } } };
    s = applyHandoff(s, handoff(s, "email"), POLICY);
    s = rejected(s, "email");
    expect(s.tasks.email).toMatchObject({ merge: "failed", mergeDetail: expect.stringContaining(DETAIL) });
    const fix = s.tasks["email-vfix"]!;
    expect(fix.resolves).toBe("email");
    expect(fix.task).toMatchObject({
      kind: "fix",
      priority: 1,
      attempt: 1,
      conflictBranch: s.tasks.email!.task.branch,
      branch: "worker/email-vfix",
      scope: ["src/validate.ts"],
    });
    expect(fix.task.context).toContain(DETAIL);
    expect(fix.task.model).toBeUndefined();
    expect(s.order.at(-1)).toBe("email-vfix");
    // The fix lands: the task's work is on the base; the run is not held back by the rejected attempt.
    s = { ...s, tasks: { ...s.tasks, "email-vfix": { ...fix, published: true } } };
    s = applyHandoff(s, handoff(s, "email-vfix"), POLICY);
    s = applyMerge(s, { taskId: "email-vfix", attempt: 1, outcome: "merged", detail: "" }, POLICY);
    expect(s.tasks.email!.resolvedBy).toBe("email-vfix");
    expect(unmergedWork(s)).toEqual([]);
    expect(summarize(s, { sha: "abc", green: true, summary: "green" }, 1).status).toBe("green");
  });
});
