import { type AcceptedRun, emptyMetrics, type Handoff, type HandoffStatus, Task } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import {
  applyFinalRequest,
  applyFinalResult,
  applyFixRequest,
  applyHandoff as applyHandoffWith,
  applyMergeRetry,
  applyMerge as applyMergeWith,
  applyPlan,
  buildTasks,
  decideFinalize,
  handoffForRemerge,
  initialRunState,
  type MergeOutcome,
  needsPlan,
  type PlannerOutput,
  type RunPolicy,
  type RunState,
  type SweepRecord,
  summarize,
  tasksToPublish,
  unmergedWork,
} from "../src/domain/run.ts";

const T0 = 1_700_000_000_000;
const RUN: AcceptedRun = {
  runId: "run-1",
  prompt: "Build a todo REST API",
  repo: "/tmp/target",
  baseBranch: "main",
  maxWorkers: 2,
};
const OPTS = { branchPrefix: "worker/" };
const POLICY: RunPolicy = {
  branchPrefix: "worker/",
  fallbackModel: "fallback-model",
  maxConflictFixes: 30,
  finalizationMaxAttempts: 3,
  finalizationTimeoutMs: 60_000,
};
const applyHandoff = (s: RunState, h: Handoff) => applyHandoffWith(s, h, POLICY);
/** Merge outcome for the task's current attempt; `detail` doubles as the conflicting files list. */
const applyMerge = (s: RunState, id: string, outcome: MergeOutcome, detail: string) =>
  applyMergeWith(
    s,
    {
      taskId: id,
      attempt: s.tasks[id]?.task.attempt ?? 1,
      outcome,
      detail,
      files: detail ? detail.split(", ") : [],
    },
    POLICY,
  );
const GREEN: SweepRecord = { sha: "abc1234567890", green: true, summary: "green" };
const RED: SweepRecord = { sha: "def1234567890", green: false, summary: "red: test" };

const fresh = (maxWorkers = RUN.maxWorkers): RunState => initialRunState({ ...RUN, maxWorkers }, T0);

/** Plans `raw` into `s` (one model iteration, no turns, `tokens` tokens). */
function plan(s: RunState, raw: PlannerOutput["tasks"], tokens = 0): RunState {
  return applyPlan(s, [], buildTasks(s, raw, OPTS).tasks, tokens);
}

/** `n` tasks with ids t1..tn. */
const raws = (n: number): PlannerOutput["tasks"] =>
  Array.from({ length: n }, (_, i) => ({ id: `t${i + 1}`, description: `task number ${i + 1}` }));

function handoff(s: RunState, taskId: string, status: HandoffStatus = "complete", tokens = 0): Handoff {
  const task = s.tasks[taskId]?.task ?? Task.parse({ ...s.tasks[s.order[0]!]!.task, id: taskId });
  return {
    taskId,
    runId: s.run.runId,
    status,
    summary: `${taskId} done`,
    filesChanged: [`src/${taskId}.ts`],
    concerns: [],
    suggestions: [],
    metrics: { ...emptyMetrics(), tokensUsed: tokens },
    branch: task.branch,
    head: "0123456789abcdef",
    task,
  };
}

const publish = (s: RunState, id: string): RunState => ({
  ...s,
  tasks: { ...s.tasks, [id]: { ...s.tasks[id]!, published: true } },
});

/** Handoff (with `status`) and merge (with `outcome`) for each id. */
function finish(s: RunState, ids: string[], status: HandoffStatus, outcome: MergeOutcome): RunState {
  let next = s;
  for (const id of ids) {
    next = applyHandoff(next, handoff(next, id, status));
    // A failed/blocked first attempt is retried once: hand off the retry with the same status.
    if (!next.tasks[id]!.handoff) next = applyHandoff(next, handoff(next, id, status));
    next = applyMerge(next, id, outcome, "");
  }
  return next;
}

describe("needsPlan", () => {
  it("given a fresh run, then the first plan is needed", () => {
    expect(needsPlan(fresh(), 3)).toBe(true);
  });

  it("given three active tasks, when handoffs arrive, then a replan is needed only after replanAfter of them", () => {
    let s = plan(fresh(), raws(3));
    expect(needsPlan(s, 3)).toBe(false);
    s = applyHandoff(s, handoff(s, "t1"));
    s = applyHandoff(s, handoff(s, "t2"));
    expect(needsPlan(s, 3)).toBe(false);
    s = applyHandoff(s, handoff(s, "t3"));
    expect(s.handoffsSinceReplan).toBe(3);
    expect(needsPlan(s, 3)).toBe(true);
  });

  it("given every task terminal (idle), then a replan is needed even with fewer handoffs than replanAfter", () => {
    let s = plan(fresh(), raws(1));
    s = applyHandoff(s, handoff(s, "t1"));
    expect(needsPlan(s, 3)).toBe(false); // handed off, merge still pending: active
    s = applyMerge(s, "t1", "merged", "");
    expect(needsPlan(s, 3)).toBe(true);
  });

  it("given planningDone, then no plan is needed even when idle", () => {
    const s = plan(plan(fresh(), []), []);
    expect(s.planningDone).toBe(true);
    expect(needsPlan(s, 3)).toBe(false);
    expect(needsPlan({ ...fresh(), planningDone: true }, 3)).toBe(false);
  });

  it("given a phase other than planning, then no plan is needed", () => {
    expect(needsPlan({ ...fresh(), phase: "finalizing" }, 3)).toBe(false);
    expect(needsPlan({ ...fresh(), phase: "completed" }, 3)).toBe(false);
    const idle = finish(plan(fresh(), raws(1)), ["t1"], "complete", "merged");
    expect(needsPlan({ ...idle, phase: "finalizing" }, 1)).toBe(false);
  });
});

describe("buildTasks", () => {
  it("given a model id, then it is slugified and the branch is <prefix><id>-<slug of description>", () => {
    const { tasks, dropped } = buildTasks(
      fresh(),
      [{ id: "Add Users Store!", description: "Add a users store with CRUD" }],
      OPTS,
    );
    expect(dropped).toEqual([]);
    expect(tasks).toHaveLength(1);
    const t = tasks[0]!;
    expect(t.id).toBe("add-users-store");
    expect(t.branch).toBe("worker/add-users-store-add-a-users-store-with-crud");
    expect(() => Task.parse(t)).not.toThrow();
  });

  it("given no model id, then ids are task-NNN counted from the tasks the run already has", () => {
    const first = buildTasks(
      fresh(),
      [{ description: "one" }, { id: "b", description: "two" }, { description: "three" }],
      OPTS,
    );
    expect(first.tasks.map((t) => t.id)).toEqual(["task-001", "b", "task-003"]);
    const s = plan(fresh(), raws(2));
    const next = buildTasks(s, [{ description: "later" }], OPTS);
    expect(next.tasks.map((t) => t.id)).toEqual(["task-003"]);
  });

  it("given repeated ids (within the reply or already in the run), then the repeats are dropped", () => {
    const s = plan(fresh(), [{ id: "api", description: "api" }]);
    const { tasks, dropped } = buildTasks(
      s,
      [
        { id: "db", description: "database" },
        { id: "DB", description: "database again" },
        { id: "Api", description: "api again" },
        { id: "ui", description: "ui" },
      ],
      OPTS,
    );
    expect(tasks.map((t) => t.id)).toEqual(["db", "ui"]);
    expect(dropped).toEqual(["db", "api"]);
  });

  it("given optional fields missing, then priority 5, acceptance empty, and the run's fields are copied", () => {
    const { tasks } = buildTasks(fresh(), [{ id: "a", description: "do a" }], OPTS);
    expect(tasks[0]).toEqual({
      id: "a",
      runId: "run-1",
      kind: "plan",
      description: "do a",
      scope: [],
      acceptance: "",
      branch: "worker/a-do-a",
      priority: 5,
      depth: 0,
      attempt: 1,
      repo: "/tmp/target",
      baseBranch: "main",
    });
  });

  it("given a priority and a scope with empty entries, then the priority is kept and empty entries removed", () => {
    const { tasks } = buildTasks(
      fresh(),
      [
        {
          id: "a",
          description: "do a",
          priority: 2,
          scope: ["src/a.ts", "", "   ", "test/a.test.ts"],
          acceptance: "tests pass",
        },
      ],
      OPTS,
    );
    const t = tasks[0]!;
    expect(t.priority).toBe(2);
    expect(t.scope).toEqual(["src/a.ts", "test/a.test.ts"]);
    expect(t.acceptance).toBe("tests pass");
    expect(() => Task.parse(t)).not.toThrow();
  });
});

describe("applyPlan", () => {
  it("given new tasks, then they are added unpublished in order, with iteration and tokens advanced", () => {
    const s0 = { ...fresh(), handoffsSinceReplan: 4, consecutiveErrors: 2, tokens: 10 };
    const turns = [
      { role: "user" as const, content: "plan" },
      { role: "assistant" as const, content: "{}" },
    ];
    const s = applyPlan(s0, turns, buildTasks(s0, raws(2), OPTS).tasks, 150);
    expect(s.iteration).toBe(1);
    expect(s.tokens).toBe(160);
    expect(s.conversation).toEqual(turns);
    expect(s.order).toEqual(["t1", "t2"]);
    expect(s.tasks.t1?.published).toBe(false);
    expect(s.handoffsSinceReplan).toBe(0);
    expect(s.consecutiveErrors).toBe(0);
    expect(s.planningDone).toBe(false);
    // the input state is not mutated
    expect(s0.order).toEqual([]);
    expect(s0.iteration).toBe(0);
  });

  it("given no new tasks while a task is still active, then planning is not done", () => {
    const s = plan(plan(fresh(), raws(1)), []);
    expect(s.iteration).toBe(2);
    expect(s.planningDone).toBe(false);
  });

  it("given no new tasks and nothing active, then planning is done", () => {
    const idle = finish(plan(fresh(), raws(2)), ["t1", "t2"], "complete", "merged");
    const s = plan(idle, [], 7);
    expect(s.planningDone).toBe(true);
    expect(s.tokens).toBe(idle.tokens + 7);
  });

  it("given new tasks while nothing is active, then planning is not done", () => {
    const idle = finish(plan(fresh(), raws(1)), ["t1"], "complete", "merged");
    expect(plan(idle, [{ id: "more", description: "more" }]).planningDone).toBe(false);
  });
});

describe("tasksToPublish", () => {
  it("given unpublished tasks of mixed priority, then they come in priority order, creation order on ties", () => {
    const s = plan(fresh(10), [
      { id: "a", description: "a", priority: 5 },
      { id: "b", description: "b", priority: 1 },
      { id: "c", description: "c", priority: 5 },
      { id: "d", description: "d", priority: 3 },
    ]);
    expect(tasksToPublish(s).map((t) => t.id)).toEqual(["b", "d", "a", "c"]);
  });

  it("given maxWorkers 2, then at most 2 are published without a handoff at once", () => {
    let s = plan(fresh(2), [
      { id: "a", description: "a", priority: 5 },
      { id: "b", description: "b", priority: 1 },
      { id: "c", description: "c", priority: 4 },
      { id: "d", description: "d", priority: 3 },
    ]);
    expect(tasksToPublish(s).map((t) => t.id)).toEqual(["b", "d"]);
    s = publish(publish(s, "b"), "d");
    expect(tasksToPublish(s)).toEqual([]);
    s = applyHandoff(s, handoff(s, "b"));
    expect(tasksToPublish(s).map((t) => t.id)).toEqual(["c"]); // merge pending does not hold a worker
    s = applyHandoff(publish(s, "c"), handoff(s, "c"));
    s = applyHandoff(s, handoff(s, "d"));
    expect(tasksToPublish(s).map((t) => t.id)).toEqual(["a"]);
  });

  it("given everything published, then nothing is returned", () => {
    let s = plan(fresh(5), raws(2));
    s = publish(publish(s, "t1"), "t2");
    expect(tasksToPublish(s)).toEqual([]);
  });
});

describe("applyHandoff", () => {
  it("given a known task, then the handoff is recorded, reported and its tokens counted", () => {
    const s0 = plan(fresh(), raws(2), 100);
    const s = applyHandoff(s0, handoff(s0, "t1", "partial", 40));
    const rec = s.tasks.t1!;
    expect(rec.published).toBe(true);
    expect(rec.handoff).toEqual({
      status: "partial",
      summary: "t1 done",
      filesChanged: ["src/t1.ts"],
      concerns: [],
      suggestions: [],
      tokens: 40,
      head: "0123456789abcdef",
    });
    expect(s.pendingReports).toEqual(["t1"]);
    expect(s.handoffsSinceReplan).toBe(1);
    expect(s.tokens).toBe(140);
    expect(s0.tasks.t1?.handoff).toBeUndefined();
  });

  it("given the same handoff twice, then the repeat is ignored", () => {
    const s0 = plan(fresh(), raws(1));
    const once = applyHandoff(s0, handoff(s0, "t1", "complete", 40));
    const twice = applyHandoff(once, handoff(s0, "t1", "failed", 99));
    expect(twice).toBe(once);
    expect(twice.tokens).toBe(40);
    expect(twice.pendingReports).toEqual(["t1"]);
    expect(twice.tasks.t1?.handoff?.status).toBe("complete");
  });

  it("given a handoff for an unknown task, then it is ignored", () => {
    const s0 = plan(fresh(), raws(1));
    expect(applyHandoff(s0, handoff(s0, "nope", "complete", 5))).toBe(s0);
  });
});

describe("applyMerge", () => {
  it("given a known task, then the outcome is recorded; a repeat is ignored", () => {
    const planned = plan(fresh(), raws(1));
    const s0 = applyHandoff(planned, handoff(planned, "t1"));
    const once = applyMerge(s0, "t1", "conflict", "src/t1.ts");
    expect(once.tasks.t1?.merge).toBe("conflict");
    expect(once.tasks.t1?.mergeDetail).toBe("src/t1.ts");
    const twice = applyMerge(once, "t1", "merged", "");
    expect(twice).toBe(once);
    expect(twice.tasks.t1?.merge).toBe("conflict");
  });

  it("given an unknown task, then it is ignored", () => {
    const s0 = plan(fresh(), raws(1));
    expect(applyMerge(s0, "nope", "merged", "")).toBe(s0);
  });
});

describe("decideFinalize", () => {
  const NOW = T0 + 10;
  it("given planning not done, then wait", () => {
    const s = finish(plan(fresh(), raws(1)), ["t1"], "complete", "merged");
    expect(decideFinalize(s, NOW, POLICY)).toEqual({ kind: "wait" });
  });

  it("given planning done but a task still active, then wait", () => {
    let s = plan(fresh(), raws(2));
    s = finish(s, ["t1"], "complete", "merged");
    s = applyHandoff(s, handoff(s, "t2"));
    expect(decideFinalize({ ...s, planningDone: true }, NOW, POLICY)).toEqual({ kind: "wait" });
  });

  it("given done and idle, then request a sweep once; wait for its result; then complete green", () => {
    const s = plan(finish(plan(fresh(), raws(1)), ["t1"], "complete", "merged"), []);
    expect(s.planningDone).toBe(true);
    const d0 = decideFinalize(s, NOW, POLICY);
    expect(d0).toEqual({ kind: "request-sweep", requestId: "final-run-1-1" });
    const requested = applyFinalRequest(s, "final-run-1-1");
    expect(decideFinalize(requested, NOW, POLICY)).toEqual({ kind: "wait" });
    expect(applyFinalResult(requested, "some-other-request", GREEN, NOW)).toBe(requested);
    const answered = applyFinalResult(requested, "final-run-1-1", GREEN, NOW);
    const d = decideFinalize(answered, NOW + 20, POLICY);
    expect(d.kind === "complete" && d.summary.status).toBe("green");
  });

  it("given a red final sweep, when fix tasks arrive and finish, then sweep again and complete green", () => {
    let s = plan(finish(plan(fresh(5), raws(1)), ["t1"], "complete", "merged"), []);
    s = applyFinalResult(applyFinalRequest(s, "final-run-1-1"), "final-run-1-1", RED, NOW);
    expect(decideFinalize(s, NOW, POLICY)).toEqual({
      kind: "wait",
      untilMs: NOW + POLICY.finalizationTimeoutMs,
    });
    s = applyFixRequest(
      s,
      {
        sha: RED.sha,
        signature: "sig-1",
        summary: "test failed",
        tasks: [{ description: "fix it", scope: ["src/a.ts"], acceptance: "tests pass" }],
      },
      POLICY,
    );
    expect(decideFinalize(s, NOW, POLICY)).toEqual({ kind: "wait" }); // the fix task is active
    s = finish(publish(s, "fix-001"), ["fix-001"], "complete", "merged");
    expect(decideFinalize(s, NOW, POLICY)).toEqual({ kind: "request-sweep", requestId: "final-run-1-2" });
    s = applyFinalResult(applyFinalRequest(s, "final-run-1-2"), "final-run-1-2", GREEN, NOW);
    const d = decideFinalize(s, NOW, POLICY);
    expect(d.kind === "complete" && d.summary).toMatchObject({ status: "green", fixTasks: 1 });
  });

  it("given a red final sweep and no fix within the timeout, then complete red", () => {
    let s = plan(finish(plan(fresh(), raws(1)), ["t1"], "complete", "merged"), []);
    s = applyFinalResult(applyFinalRequest(s, "final-run-1-1"), "final-run-1-1", RED, NOW);
    const d = decideFinalize(s, NOW + POLICY.finalizationTimeoutMs, POLICY);
    expect(d.kind === "complete" && d.summary.status).toBe("red");
  });

  it("given the last allowed final sweep is red, then complete red without waiting", () => {
    let s = plan(finish(plan(fresh(), raws(1)), ["t1"], "complete", "merged"), []);
    s = { ...s, final: { attempt: 2, taskCount: s.order.length } };
    s = applyFinalResult(applyFinalRequest(s, "final-run-1-3"), "final-run-1-3", RED, NOW);
    const d = decideFinalize(s, NOW, POLICY);
    expect(d.kind === "complete" && d.summary.status).toBe("red");
  });

  it("given a green main but a failed task, then complete red at once (no fix will come)", () => {
    let s = plan(finish(plan(fresh(), raws(1)), ["t1"], "failed", "skipped"), []);
    s = applyFinalResult(applyFinalRequest(s, "final-run-1-1"), "final-run-1-1", GREEN, NOW);
    const d = decideFinalize(s, NOW, POLICY);
    expect(d.kind === "complete" && d.summary.status).toBe("red");
  });
});

describe("retries", () => {
  it("given a failed first attempt, then attempt 2 is queued on the fallback model with the first handoff as context", () => {
    let s = plan(fresh(), raws(1));
    s = applyHandoff(publish(s, "t1"), {
      ...handoff(s, "t1", "failed"),
      summary: "tests kept failing",
      concerns: ["flaky db"],
    });
    const rec = s.tasks.t1!;
    expect(rec.handoff).toBeUndefined();
    expect(rec.published).toBe(false);
    expect(rec.task).toMatchObject({ attempt: 2, model: "fallback-model" });
    expect(rec.task.context).toContain("tests kept failing");
    expect(rec.task.context).toContain("flaky db");
    expect(rec.previous).toEqual({ status: "failed", summary: "tests kept failing", concerns: ["flaky db"] });
    expect(s.pendingReports).toEqual(["t1"]);
    expect(tasksToPublish(s).map((t) => t.attempt)).toEqual([2]);
  });

  it("given a stale handoff or merge of attempt 1 after the retry started, then it is ignored", () => {
    let s = plan(fresh(), raws(1));
    const first = handoff(s, "t1", "blocked");
    s = applyHandoff(s, first);
    expect(applyHandoff(s, first)).toBe(s);
    expect(applyMergeWith(s, { taskId: "t1", attempt: 1, outcome: "skipped", detail: "" }, POLICY)).toBe(s);
  });

  it("given the retry fails too, then it is final and the run is red", () => {
    const s = finish(plan(fresh(), raws(1)), ["t1"], "failed", "skipped");
    expect(s.tasks.t1!.handoff?.status).toBe("failed");
    expect(s.tasks.t1!.task.attempt).toBe(2);
    expect(summarize(s, GREEN, T0).retriedTasks).toBe(1);
  });
});

describe("conflict-fix tasks", () => {
  it("given a conflict, then a priority-1 conflict-fix task for that branch and files is queued", () => {
    let s = plan(fresh(), raws(1));
    s = applyMerge(applyHandoff(s, handoff(s, "t1")), "t1", "conflict", "src/app.ts, src/b.ts");
    const cf = s.tasks["t1-cf"]!;
    expect(cf.task).toMatchObject({
      kind: "conflict-fix",
      priority: 1,
      scope: ["src/app.ts", "src/b.ts"],
      conflictBranch: s.tasks.t1!.task.branch,
      attempt: 1,
    });
    expect(cf.resolves).toBe("t1");
    expect(summarize(s, GREEN, T0).status).toBe("red");
  });

  it("given the conflict-fix task merges, then the original counts as landed and the run can be green", () => {
    let s = plan(fresh(), raws(1));
    s = applyMerge(applyHandoff(s, handoff(s, "t1")), "t1", "conflict", "src/app.ts");
    s = finish(publish(s, "t1-cf"), ["t1-cf"], "complete", "merged");
    expect(s.tasks.t1!.resolvedBy).toBe("t1-cf");
    expect(summarize(s, GREEN, T0)).toMatchObject({ status: "green", conflicts: 1, conflictFixTasks: 1 });
  });

  it("given a conflict-fix task conflicts itself, then a successor starts from its branch, up to 3 in a row", () => {
    let s = plan(fresh(), raws(1));
    s = applyMerge(applyHandoff(s, handoff(s, "t1")), "t1", "conflict", "src/app.ts");
    s = applyMerge(applyHandoff(publish(s, "t1-cf"), handoff(s, "t1-cf")), "t1-cf", "conflict", "src/app.ts");
    const cf2 = s.tasks["t1-cf2"]!;
    expect(cf2.resolves).toBe("t1");
    expect(cf2.task).toMatchObject({
      kind: "conflict-fix",
      priority: 1,
      conflictBranch: s.tasks["t1-cf"]!.task.branch,
    });
    expect(cf2.task.description).toContain("conflicted again");
    // The work is listed once, under the original, while its newest resolution runs.
    expect(unmergedWork(s)).toEqual([
      { taskId: "t1", carrier: "t1-cf", reason: "conflict: src/app.ts (t1-cf); t1-cf2 not finished" },
    ]);
    s = applyMerge(
      applyHandoff(publish(s, "t1-cf2"), handoff(s, "t1-cf2")),
      "t1-cf2",
      "conflict",
      "src/app.ts",
    );
    s = applyMerge(
      applyHandoff(publish(s, "t1-cf3"), handoff(s, "t1-cf3")),
      "t1-cf3",
      "conflict",
      "src/app.ts",
    );
    expect(s.order.filter((id) => s.tasks[id]!.task.kind === "conflict-fix")).toEqual([
      "t1-cf",
      "t1-cf2",
      "t1-cf3",
    ]);
    expect(summarize(s, GREEN, T0).unmerged).toEqual([
      { taskId: "t1", reason: "conflict: src/app.ts (t1-cf3)" },
    ]);
  });

  it("given the newest resolution lands, then the original is landed and nothing is listed unmerged", () => {
    let s = plan(fresh(), raws(1));
    s = applyMerge(applyHandoff(s, handoff(s, "t1")), "t1", "conflict", "src/app.ts");
    s = applyMerge(applyHandoff(publish(s, "t1-cf"), handoff(s, "t1-cf")), "t1-cf", "conflict", "src/app.ts");
    s = finish(publish(s, "t1-cf2"), ["t1-cf2"], "complete", "merged");
    expect(s.tasks.t1!.resolvedBy).toBe("t1-cf2");
    expect(unmergedWork(s)).toEqual([]);
    expect(summarize(s, GREEN, T0).status).toBe("green");
  });

  it("given the per-run budget is spent, then conflicts file no more conflict-fix tasks", () => {
    let s = plan(fresh(5), raws(2));
    const capped = { ...POLICY, maxConflictFixes: 1 };
    s = applyMergeWith(
      applyHandoff(s, handoff(s, "t1")),
      { taskId: "t1", attempt: 1, outcome: "conflict", detail: "", files: ["a"] },
      capped,
    );
    s = applyMergeWith(
      applyHandoff(s, handoff(s, "t2")),
      { taskId: "t2", attempt: 1, outcome: "conflict", detail: "", files: ["a"] },
      capped,
    );
    expect(s.order.filter((id) => id.endsWith("-cf"))).toEqual(["t1-cf"]);
  });
});

describe("fix requests", () => {
  const req = (signature: string, n = 2) => ({
    sha: "abc",
    signature,
    summary: "test: 1 failing",
    tasks: Array.from({ length: n }, (_, i) => ({
      description: `fix ${i}`,
      scope: [`src/f${i}.ts`],
      acceptance: "green",
    })),
  });

  it("given a request, then fix tasks get unique ids, priority 1 and the signature", () => {
    const s = applyFixRequest(plan(fresh(), raws(1)), req("sig-a"), POLICY);
    expect(s.order.slice(1)).toEqual(["fix-001", "fix-002"]);
    expect(s.tasks["fix-001"]!.task).toMatchObject({
      kind: "fix",
      priority: 1,
      signature: "sig-a",
      scope: ["src/f0.ts"],
    });
  });

  it("given a fix for the same signature in flight, then the request is dropped; another signature is filed", () => {
    const s1 = applyFixRequest(plan(fresh(), raws(1)), req("sig-a"), POLICY);
    expect(applyFixRequest(s1, req("sig-a"), POLICY)).toBe(s1);
    const s2 = applyFixRequest(s1, req("sig-b", 1), POLICY);
    expect(s2.order.at(-1)).toBe("fix-003");
  });

  it("given the earlier fixes for a signature are terminal, then the same signature is filed again with new ids", () => {
    let s = applyFixRequest(plan(fresh(5), raws(1)), req("sig-a", 1), POLICY);
    s = finish(publish(s, "fix-001"), ["fix-001"], "complete", "merged");
    s = applyFixRequest(s, req("sig-a", 1), POLICY);
    expect(s.order.at(-1)).toBe("fix-002");
  });
});

describe("summarize", () => {
  const base = () => plan(fresh(5), raws(3), 1000);

  it("given every task merged or skipped and a green final sweep, then green with counts and no reason", () => {
    let s = finish(base(), ["t1"], "complete", "merged");
    s = finish(s, ["t2"], "partial", "merged");
    s = finish(s, ["t3"], "complete", "skipped");
    const sum = summarize(s, GREEN, T0 + 5000);
    expect(sum).toEqual({
      status: "green",
      tasks: { total: 3, complete: 2, partial: 1, blocked: 0, failed: 0 },
      merged: 2,
      conflicts: 0,
      fixTasks: 0,
      conflictFixTasks: 0,
      retriedTasks: 0,
      decomposedTasks: 0,
      durationMs: 5000,
      tokens: 1000,
      repo: "/tmp/target",
      head: GREEN.sha,
    });
  });

  it("given a red final sweep, then red with the sweep summary in the reason", () => {
    const s = finish(base(), ["t1", "t2", "t3"], "complete", "merged");
    const sum = summarize(s, RED, T0 + 1);
    expect(sum.status).toBe("red");
    expect(sum.head).toBe(RED.sha);
    expect(sum.reason).toBe("main is red: test");
  });

  it("given no final sweep, then red", () => {
    const s = finish(base(), ["t1", "t2", "t3"], "complete", "merged");
    const sum = summarize(s, undefined, T0 + 1);
    expect(sum.status).toBe("red");
    expect(sum.head).toBe("");
  });

  it("given a failed and a blocked task, then red naming them, even with a green sweep", () => {
    let s = finish(base(), ["t1"], "complete", "merged");
    s = finish(s, ["t2"], "failed", "skipped");
    s = finish(s, ["t3"], "blocked", "skipped");
    const sum = summarize(s, GREEN, T0 + 1);
    expect(sum.status).toBe("red");
    expect(sum.tasks).toEqual({ total: 3, complete: 1, partial: 0, blocked: 1, failed: 1 });
    expect(sum.reason).toBe("2 task(s) failed or blocked");
  });

  it("given a conflict and a failed merge, then red with both counted as not merged", () => {
    let s = finish(base(), ["t1"], "complete", "merged");
    s = finish(s, ["t2"], "complete", "conflict");
    s = finish(s, ["t3"], "complete", "failed");
    const sum = summarize(s, RED, T0 + 1);
    expect(sum.status).toBe("red");
    expect(sum.merged).toBe(1);
    expect(sum.conflicts).toBe(1);
    expect(sum.reason).toBe("main is red: test; 2 task(s) not merged");
  });

  it("given an explicit reason, then red with exactly that reason", () => {
    const s = finish(base(), ["t1", "t2", "t3"], "complete", "merged");
    const sum = summarize(s, GREEN, T0 + 1, "planner gave up");
    expect(sum.status).toBe("red");
    expect(sum.reason).toBe("planner gave up");
  });

  it("given a fix task in the run, then it is counted in fixTasks", () => {
    const s = base();
    const t1 = s.tasks.t1!;
    const withFix = {
      ...s,
      tasks: { ...s.tasks, t1: { ...t1, task: { ...t1.task, kind: "fix" as const } } },
    };
    expect(summarize(withFix, GREEN, T0).fixTasks).toBe(1);
  });
});

describe("finalization retries failed merges once", () => {
  it("given a task whose merge failed, then it is re-submitted once before the final sweep, then the sweep follows", () => {
    let s = plan(finish(plan(fresh(), raws(2)), ["t1"], "complete", "merged"), []);
    s = applyMerge(applyHandoff(s, handoff(s, "t2")), "t2", "failed", "branch missing");
    s = plan(s, []);
    expect(decideFinalize(s, T0, POLICY)).toEqual({ kind: "retry-merges", taskIds: ["t2"] });
    const h = handoffForRemerge(s, "t2")!;
    expect(h).toMatchObject({
      taskId: "t2",
      head: "0123456789abcdef",
      branch: s.tasks.t2!.task.branch,
      task: { attempt: 1 },
    });
    s = applyMergeRetry(s, ["t2"]);
    expect(s.tasks.t2!.merge).toBeUndefined();
    expect(decideFinalize(s, T0, POLICY)).toEqual({ kind: "wait" }); // merge pending again
    s = applyMerge(s, "t2", "failed", "branch missing");
    // not retried a second time: the final sweep is requested and the run ends red
    expect(decideFinalize(s, T0, POLICY)).toEqual({ kind: "request-sweep", requestId: "final-run-1-1" });
    s = applyFinalResult(applyFinalRequest(s, "final-run-1-1"), "final-run-1-1", GREEN, T0);
    const d = decideFinalize(s, T0, POLICY);
    expect(d.kind === "complete" && d.summary.status).toBe("red");
  });

  it("given the retried merge lands, then the run can be green", () => {
    let s = plan(fresh(), raws(1));
    s = applyMerge(applyHandoff(s, handoff(s, "t1")), "t1", "failed", "push rejected");
    s = applyMergeRetry(plan(s, []), ["t1"]);
    s = applyMerge(s, "t1", "merged", "");
    s = applyFinalResult(applyFinalRequest(s, "final-run-1-1"), "final-run-1-1", GREEN, T0);
    const d = decideFinalize(s, T0, POLICY);
    expect(d.kind === "complete" && d.summary.status).toBe("green");
  });
});
