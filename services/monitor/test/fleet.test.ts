import { type Envelope, emptyMetrics, type Handoff, type LlmRunUsage, type Task } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { Fleet, type FleetInput, overBudget, redSeconds, stuckTasks } from "../src/domain/fleet.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
let seq = 0;
/** An event envelope of `type` for run `run` at `T0 + atMs`. */
function ev(type: string, data: Record<string, unknown>, atMs: number, run = "r1", id?: string): FleetInput {
  const env = {
    id: id ?? `e${++seq}`,
    type,
    version: 1,
    ts: new Date(T0 + atMs).toISOString(),
    runId: run,
    correlationId: run,
    causationId: "x",
    data,
  };
  return { kind: "event", event: env };
}
const task = (id: string, attempt = 1, extra: Partial<Task> = {}): Task => ({
  id,
  runId: "r1",
  kind: "plan",
  description: "d",
  scope: [],
  acceptance: "",
  branch: `worker/${id}`,
  priority: 5,
  depth: 0,
  attempt,
  repo: "/repo",
  baseBranch: "main",
  ...extra,
});
const planned = (t: Task, at: number) =>
  ev("task.planned", { task: t }, at, t.runId, `planned-${t.id}-${t.attempt}`);
function handoff(t: Task, status: Handoff["status"], changed: boolean): FleetInput {
  const data: Handoff = {
    taskId: t.id,
    runId: t.runId,
    status,
    summary: "",
    filesChanged: changed ? ["a.ts"] : [],
    concerns: [],
    suggestions: [],
    metrics: { ...emptyMetrics(), ...(changed ? { linesAdded: 3, filesModified: 1 } : {}) },
    branch: t.branch,
    task: t,
  };
  const env: Envelope<Handoff> = {
    id: `handoff-${t.runId}-${t.id}-${t.attempt}`,
    type: "handoff",
    version: 1,
    ts: new Date(T0).toISOString(),
    runId: t.runId,
    correlationId: t.runId,
    causationId: "x",
    data,
  };
  return { kind: "handoff", envelope: env };
}
const given = (...inputs: FleetInput[]) => {
  const f = new Fleet();
  for (const i of inputs) f.apply(i);
  return f;
};

describe("the monitor's fold of the fleet", () => {
  it("follows a task from plan to merge and counts its plan-to-merge time and sandbox run", () => {
    const t = task("t1");
    const f = given(
      ev("run.accepted", {}, 0),
      planned(t, 1000),
      ev("task.started", { taskId: "t1", attempt: 1, branch: t.branch, sandbox: "local" }, 2000),
    );
    expect(f.phases("r1").get("running")).toBe(1);
    f.apply(
      ev(
        "task.finished",
        { taskId: "t1", attempt: 1, status: "complete", summary: "", durationMs: 4000, tokensUsed: 9 },
        6000,
      ),
    );
    f.apply(ev("merge.merged", { taskId: "t1", attempt: 1 }, 11_000));
    expect(f.phases("r1").get("running")).toBe(0);
    expect(f.phases("r1").get("merged")).toBe(1);
    expect(f.countersOf("r1").merges.merged).toBe(1);
    expect(f.planToMerge.count).toBe(1);
    expect(f.planToMerge.sum).toBe(10); // planned at 1 s, merged at 11 s
    expect(f.sandboxRuns.get("complete")?.sum).toBe(4);
  });

  it("counts an event id once, even when it is delivered again after JetStream's dedup window", () => {
    const t = task("t1");
    const merged = ev("merge.merged", { taskId: "t1", attempt: 1 }, 5000, "r1", "merge-r1-t1-1");
    const f = given(planned(t, 0), merged, merged, planned(t, 0));
    expect(f.countersOf("r1").merges.merged).toBe(1);
    expect(f.countersOf("r1").planned.plan).toBe(1);
    expect(f.applied).toBe(2);
  });

  it("counts fix and conflict-fix tasks by kind, and a retry moves the task back to planned", () => {
    const t = task("t1");
    const f = given(
      planned(t, 0),
      planned(task("fix-1", 1, { kind: "fix", priority: 1 }), 10),
      planned(task("cf-1", 1, { kind: "conflict-fix" }), 20),
      ev("task.started", { taskId: "t1", attempt: 1, branch: "b", sandbox: "s" }, 30),
      ev(
        "task.finished",
        { taskId: "t1", attempt: 1, status: "failed", summary: "", durationMs: 5, tokensUsed: 0 },
        40,
      ),
      planned(task("t1", 2, { kind: "retry" }), 50),
    );
    expect(f.countersOf("r1").planned).toEqual({ plan: 1, fix: 1, "conflict-fix": 1, retry: 1 });
    expect(f.tasks.get("r1/t1")?.attempt).toBe(2);
    expect(f.phases("r1").get("planned")).toBe(3);
    expect(f.phases("r1").get("handed_off")).toBe(0);
  });

  it("marks a decomposed parent when its subtasks are planned", () => {
    const f = given(
      planned(task("big"), 0),
      planned(task("big.1", 1, { kind: "subtask", parentId: "big", depth: 1 }), 5),
    );
    expect(f.tasks.get("r1/big")?.phase).toBe("decomposed");
    expect(f.phases("r1").get("planned")).toBe(1);
  });

  it("keeps the base branch's health per run and sums the time it spent red", () => {
    const f = given(
      ev("run.accepted", {}, 0),
      ev("health.swept", { green: true }, 1000),
      ev("health.swept", { green: false }, 2000),
      ev("health.swept", { green: false }, 5000),
      ev("health.swept", { green: true }, 7000),
      ev("health.swept", { green: false }, 9000),
    );
    const run = f.runs.get("r1")!;
    expect(run.health).toBe("red");
    expect(redSeconds(run, T0 + 10_000)).toBe(6); // 2→7 s closed, 9→10 s open
    f.apply(ev("run.completed", { status: "red" }, 12_000));
    expect(redSeconds(f.runs.get("r1")!, T0 + 60_000)).toBe(8); // closed at the run's end
    expect(f.runs.get("r1")?.status).toBe("red");
  });

  it("reports a running attempt stuck once per STUCK_AFTER_MS of silence, and not after it moved on", () => {
    const f = given(
      ev("run.accepted", {}, 0),
      planned(task("t1"), 0),
      ev("task.started", { taskId: "t1", attempt: 1, branch: "b", sandbox: "s" }, 1000),
      ev("task.progress", { taskId: "t1", attempt: 1, message: "working" }, 3000),
    );
    expect(stuckTasks(f, T0 + 3000 + 9_999, 10_000)).toEqual([]);
    const [first] = stuckTasks(f, T0 + 13_000, 10_000);
    expect(first).toMatchObject({
      taskId: "t1",
      attempt: 1,
      report: 1,
      idleMs: 10_000,
      id: "stuck-r1-t1-1-1",
    });
    // The report comes back through the stream: the next is due after another STUCK_AFTER_MS.
    f.apply(
      ev(
        "task.stuck",
        { taskId: "t1", attempt: 1, idleMs: 10_000, lastActivityAt: "", report: 1, action: "retry" },
        13_000,
      ),
    );
    expect(stuckTasks(f, T0 + 20_000, 10_000)).toEqual([]);
    expect(stuckTasks(f, T0 + 23_000, 10_000)[0]?.report).toBe(2);
    f.apply(
      ev(
        "task.finished",
        { taskId: "t1", attempt: 1, status: "failed", summary: "", durationMs: 1, tokensUsed: 0 },
        24_000,
      ),
    );
    expect(stuckTasks(f, T0 + 100_000, 10_000)).toEqual([]);
    expect(f.countersOf("r1").stuckReports).toBe(1);
  });

  it("raises one empty-diff alert per complete handoff without changes, whichever stream is replayed first", () => {
    const t = task("t1");
    const alert = ev(
      "alert.raised",
      { kind: "empty-diff-complete", taskId: "t1", attempt: 1, message: "m" },
      9,
      "r1",
      "alert-empty-diff-r1-t1-1",
    );
    const f = given(
      handoff(t, "complete", false),
      handoff(task("t2"), "complete", true),
      handoff(task("t3"), "failed", false),
    );
    expect(f.pendingAlerts().map((a) => a.id)).toEqual(["alert-empty-diff-r1-t1-1"]);
    f.apply(alert);
    expect(f.pendingAlerts()).toEqual([]);
    // Alert before handoff (EVENTS replayed ahead of HANDOFFS after a restart): nothing to raise either.
    expect(given(alert, handoff(t, "complete", false)).pendingAlerts()).toEqual([]);
    expect(f.countersOf("r1").alerts["empty-diff-complete"]).toBe(1);
  });

  it("asks to cancel an active run over its token or cost budget, with the figures in the reason, once", () => {
    const usage = (runId: string, totalTokens: number, cost: number): LlmRunUsage => ({
      runId,
      requests: 1,
      promptTokens: totalTokens,
      completionTokens: 0,
      cachedTokens: 0,
      totalTokens,
      cost,
      byTask: {},
      byRole: {},
      byModel: {},
    });
    const f = given(
      ev("run.accepted", {}, 0, "r1"),
      ev("run.accepted", {}, 0, "r2"),
      ev("run.accepted", {}, 0, "r3"),
    );
    f.setUsage(usage("r1", 12_000, 0));
    f.setUsage(usage("r2", 10, 2.5));
    f.setUsage(usage("r3", 10, 0.1));
    expect(overBudget(f, { tokens: 0, cost: 0 })).toEqual([]);
    const out = overBudget(f, { tokens: 10_000, cost: 1 });
    expect(out).toEqual([
      {
        id: "cancel-budget-r1",
        runId: "r1",
        reason: "token budget exceeded: 12000 tokens used, RUN_TOKEN_BUDGET is 10000",
      },
      {
        id: "cancel-budget-r2",
        runId: "r2",
        reason: "cost budget exceeded: $2.5000 spent, RUN_COST_BUDGET is $1",
      },
    ]);
    f.apply(ev("run.cancelled", { reason: "x", by: "monitor" }, 5, "r1"));
    f.apply(ev("run.completed", { status: "cancelled" }, 6, "r2"));
    expect(overBudget(f, { tokens: 10_000, cost: 1 })).toEqual([]);
  });

  it("gives the same figures for the same inputs, however they are split between two folds", () => {
    const inputs: FleetInput[] = [
      ev("run.accepted", {}, 0),
      planned(task("a"), 0),
      planned(task("b"), 0),
      ev("task.started", { taskId: "a", attempt: 1, branch: "b", sandbox: "s" }, 100),
      ev(
        "task.finished",
        { taskId: "a", attempt: 1, status: "complete", summary: "", durationMs: 50, tokensUsed: 1 },
        150,
      ),
      ev("merge.conflict", { taskId: "a", attempt: 1 }, 200),
      ev("merge.merged", { taskId: "b", attempt: 1 }, 300),
    ];
    const whole = given(...inputs);
    const restarted = given(...inputs.slice(0, 4));
    for (const i of inputs) restarted.apply(i); // replay from the start after a restart: no double counting
    expect(restarted.countersOf("r1")).toEqual(whole.countersOf("r1"));
    expect([...restarted.phases("r1")]).toEqual([...whole.phases("r1")]);
    expect(restarted.planToMerge).toEqual(whole.planToMerge);
  });
});
