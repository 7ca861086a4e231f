import { type Handoff, type HandoffStatus, Id, Task } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import {
  aggregate,
  aggregateStatus,
  allTerminal,
  applyBatch,
  applyHandoff,
  applyMerge,
  applyModelFailure,
  buildSubtasks,
  type DecompositionState,
  decideNext,
  decideParent,
  finish,
  initialDecomposition,
  isTerminal,
  type MergeOutcome,
  markOutPublished,
  markPublished,
  type SubplannerOutput,
  shouldDecomposeAgain,
  subtaskId,
} from "../src/domain/decomposition.ts";

const T0 = 1_700_000_000_000;
const PARENT: Task = Task.parse({
  id: "api",
  runId: "run-1",
  kind: "plan",
  description: "Build the REST API",
  scope: ["src/a.ts", "src/b.ts", "src/c.ts", "src/d.ts", "src/e.ts"],
  acceptance: "npm test passes",
  branch: "worker/api-build-the-rest-api",
  priority: 4,
  depth: 0,
  attempt: 1,
  repo: "/tmp/target",
  baseBranch: "main",
});
const OPTS = { branchPrefix: "worker/", lastIndex: 0 };

const raw = (scope: string[], extra: Partial<SubplannerOutput["tasks"][number]> = {}) => ({
  description: `work on ${scope.join(" ")}`,
  scope,
  acceptance: "tests pass",
  ...extra,
});

/** A decomposition of PARENT with one batch whose scopes are `scopes`, all published. */
function withBatch(scopes: string[][], s: DecompositionState = initialDecomposition(PARENT, T0)) {
  const { tasks } = buildSubtasks(
    s.parent,
    scopes.map((sc) => raw(sc)),
    { ...OPTS, lastIndex: s.lastIndex },
  );
  let next = applyBatch(s, [], tasks, 10, "head1");
  for (const t of tasks) next = markPublished(next, t.id);
  return next;
}

function handoffOf(s: DecompositionState, id: string, status: HandoffStatus = "complete", n = 1): Handoff {
  const task = s.subtasks[id]!.task;
  return {
    taskId: id,
    runId: task.runId,
    status,
    summary: `${id} ${status}`,
    filesChanged: task.scope,
    concerns: [`concern of ${id}`],
    suggestions: [`suggestion of ${id}`],
    metrics: {
      linesAdded: 10 * n,
      linesRemoved: n,
      filesCreated: n,
      filesModified: 2 * n,
      tokensUsed: 100 * n,
      toolCallCount: 3 * n,
      durationMs: 5000,
    },
    branch: task.branch,
    head: "0123456789abcdef",
    task,
  };
}

/** Handoff `status` and merge `outcome` for subtask `id`. */
const settle = (s: DecompositionState, id: string, status: HandoffStatus, outcome: MergeOutcome) =>
  applyMerge(applyHandoff(s, handoffOf(s, id, status)), id, 1, outcome, outcome === "merged" ? "" : "why");

describe("buildSubtasks", () => {
  it("given scopes outside the parent, when built, then only files of the parent's scope remain", () => {
    const { tasks } = buildSubtasks(
      PARENT,
      [raw(["src/a.ts", "src/zzz.ts", "./src/b.ts", " src/b.ts "])],
      OPTS,
    );
    expect(tasks[0]!.scope).toEqual(["src/a.ts", "src/b.ts"]);
  });

  it("given overlapping siblings, when built, then a file stays with the first subtask that claimed it", () => {
    const { tasks } = buildSubtasks(
      PARENT,
      [raw(["src/a.ts", "src/b.ts"]), raw(["src/b.ts", "src/c.ts"])],
      OPTS,
    );
    expect(tasks.map((t) => t.scope)).toEqual([["src/a.ts", "src/b.ts"], ["src/c.ts"]]);
    const all = tasks.flatMap((t) => t.scope);
    expect(new Set(all).size).toBe(all.length);
  });

  it("given a subtask left with no file, when built, then it is dropped with a reason and numbering skips it", () => {
    const { tasks, dropped } = buildSubtasks(
      PARENT,
      [raw(["src/a.ts"]), raw(["src/a.ts", "other.ts"]), raw([]), raw(["src/c.ts"])],
      OPTS,
    );
    expect(tasks.map((t) => t.id)).toEqual(["api-sub-1", "api-sub-2"]);
    expect(tasks[1]!.scope).toEqual(["src/c.ts"]);
    expect(dropped.map((d) => d.index)).toEqual([1, 2]);
  });

  it("given 12 valid subtasks, when built, then 10 are kept and the rest are truncated", () => {
    const parent = Task.parse({ ...PARENT, scope: Array.from({ length: 12 }, (_, i) => `f${i}.ts`) });
    const { tasks, dropped } = buildSubtasks(
      parent,
      parent.scope.map((f) => raw([f])),
      OPTS,
    );
    expect(tasks).toHaveLength(10);
    expect(dropped).toHaveLength(2);
    expect(tasks.at(-1)!.id).toBe("api-sub-10");
  });

  it("given a parent, when built, then subtasks inherit run, repo, base, model and priority, one level deeper", () => {
    const parent = Task.parse({ ...PARENT, model: "glm-fallback", depth: 1 });
    const { tasks } = buildSubtasks(
      parent,
      [raw(["src/a.ts"], { id: "ignored-model-id" }), raw(["src/b.ts"], { priority: 2 })],
      { ...OPTS, lastIndex: 3 },
    );
    expect(tasks[0]).toMatchObject({
      id: "api-sub-4",
      parentId: "api",
      kind: "subtask",
      depth: 2,
      attempt: 1,
      priority: 4,
      runId: "run-1",
      repo: "/tmp/target",
      baseBranch: "main",
      model: "glm-fallback",
      branch: "worker/api-sub-4-work-on-src-a-ts",
    });
    expect(tasks[1]).toMatchObject({ id: "api-sub-5", priority: 2 });
    for (const t of tasks) expect(Task.safeParse(t).success).toBe(true);
  });

  it("given a parent id near the 80-char limit, when ids are made, then they stay valid and unique", () => {
    const long = `p${"x".repeat(74)}`;
    const ids = [1, 2, 10].map((n) => subtaskId(long, n));
    for (const id of ids) expect(Id.safeParse(id).success).toBe(true);
    expect(new Set(ids).size).toBe(3);
    expect(subtaskId("short", 3)).toBe("short-sub-3");
  });
});

describe("applyBatch and decideNext", () => {
  it("given a fresh decomposition, when deciding, then it plans", () => {
    expect(decideNext(initialDecomposition(PARENT, T0))).toEqual({ kind: "plan" });
  });

  it("given no subtasks on the first answer, when applied, then the parent is atomic and published once", () => {
    const s = applyBatch(initialDecomposition(PARENT, T0), [], [], 5);
    expect(s.phase).toBe("atomic");
    expect(decideNext(s)).toEqual({ kind: "publish-atomic" });
    expect(decideNext(markOutPublished(s))).toEqual({ kind: "idle" });
  });

  it("given a batch, when applied, then its subtasks are published before anything else", () => {
    const { tasks } = buildSubtasks(PARENT, [raw(["src/a.ts"]), raw(["src/b.ts"])], OPTS);
    const s = applyBatch(initialDecomposition(PARENT, T0), [{ role: "user", content: "x" }], tasks, 7, "h1");
    expect(s).toMatchObject({ round: 1, lastIndex: 2, tokens: 7, lastHead: "h1", phase: "active" });
    const step = decideNext(s);
    expect(step.kind === "publish-subtasks" && step.tasks.map((t) => t.id)).toEqual([
      "api-sub-1",
      "api-sub-2",
    ]);
    expect(decideNext(markPublished(markPublished(s, "api-sub-1"), "api-sub-2"))).toEqual({ kind: "wait" });
  });

  it("given repeated model failures, when the limit is hit before any batch, then the parent becomes atomic", () => {
    let s = initialDecomposition(PARENT, T0);
    for (let i = 0; i < 4; i++) s = applyModelFailure(s, "503", 5);
    expect(s.phase).toBe("active");
    s = applyModelFailure(s, "503", 5);
    expect(s.phase).toBe("atomic");
    expect(s.atomicReason).toContain("5 times");
  });

  it("given repeated model failures after a batch, when the limit is hit, then it finishes with what it has", () => {
    let s = withBatch([["src/a.ts"]]);
    s = settle(s, "api-sub-1", "complete", "merged");
    for (let i = 0; i < 5; i++) s = applyModelFailure(s, "timeout", 5);
    expect(decideNext(s)).toEqual({ kind: "finish" });
  });
});

describe("terminal detection", () => {
  it("given only a handoff, when checked, then the subtask is not terminal; with its merge outcome it is", () => {
    let s = withBatch([["src/a.ts"], ["src/b.ts"]]);
    s = applyHandoff(s, handoffOf(s, "api-sub-1"));
    expect(isTerminal(s.subtasks["api-sub-1"]!)).toBe(false);
    s = applyMerge(s, "api-sub-1", 1, "merged", "");
    expect(isTerminal(s.subtasks["api-sub-1"]!)).toBe(true);
    expect(allTerminal(s)).toBe(false);
    expect(decideNext(s)).toEqual({ kind: "wait" });
  });

  it("given a merge outcome before the handoff, when both arrive, then the subtask is terminal", () => {
    let s = withBatch([["src/a.ts"]]);
    s = applyMerge(s, "api-sub-1", 1, "skipped", "no head");
    expect(allTerminal(s)).toBe(false);
    s = applyHandoff(s, handoffOf(s, "api-sub-1"));
    expect(allTerminal(s)).toBe(true);
  });

  it("given repeats, unknown ids and other attempts, when applied, then the state is unchanged", () => {
    let s = withBatch([["src/a.ts"]]);
    s = settle(s, "api-sub-1", "complete", "merged");
    expect(applyHandoff(s, handoffOf(s, "api-sub-1", "failed"))).toBe(s);
    expect(applyMerge(s, "api-sub-1", 1, "conflict", "x")).toBe(s);
    expect(applyMerge(s, "api-sub-9", 1, "merged", "")).toBe(s);
    const fresh = withBatch([["src/a.ts"]]);
    const other = {
      ...handoffOf(fresh, "api-sub-1"),
      task: { ...fresh.subtasks["api-sub-1"]!.task, attempt: 2 },
    };
    expect(applyHandoff(fresh, other)).toBe(fresh);
    expect(applyMerge(fresh, "api-sub-1", 2, "merged", "")).toBe(fresh);
  });
});

describe("decompose again", () => {
  it("given a finished batch and rounds left, when deciding, then it asks the model again", () => {
    let s = withBatch([["src/a.ts"], ["src/b.ts"]]);
    s = settle(settle(s, "api-sub-1", "complete", "merged"), "api-sub-2", "failed", "skipped");
    expect(shouldDecomposeAgain(s)).toBe(true);
    expect(decideNext(s)).toEqual({ kind: "plan" });
  });

  it("given the model returned no more subtasks, when every subtask is terminal, then it finishes", () => {
    let s = withBatch([["src/a.ts"]]);
    s = settle(s, "api-sub-1", "complete", "merged");
    s = applyBatch(s, [], [], 3);
    expect(s).toMatchObject({ modelDone: true, round: 1, phase: "active" });
    expect(shouldDecomposeAgain(s)).toBe(false);
    expect(decideNext(s)).toEqual({ kind: "finish" });
  });

  it("given 5 rounds done, when the last batch is terminal, then it finishes without asking again", () => {
    let s = initialDecomposition(PARENT, T0);
    for (let round = 1; round <= 5; round++) {
      s = withBatch([["src/a.ts"]], s);
      const id = s.order.at(-1)!;
      expect(id).toBe(`api-sub-${round}`);
      s = settle(s, id, "failed", "skipped");
      expect(decideNext(s)).toEqual(round < 5 ? { kind: "plan" } : { kind: "finish" });
    }
    expect(shouldDecomposeAgain(s, 5)).toBe(false);
    expect(shouldDecomposeAgain(s, 6)).toBe(true);
  });

  it("given a second batch, when its subtasks are open, then the decomposition waits for them", () => {
    let s = withBatch([["src/a.ts"]]);
    s = settle(s, "api-sub-1", "complete", "merged");
    s = withBatch([["src/a.ts", "src/b.ts"]], s);
    expect(s.order).toEqual(["api-sub-1", "api-sub-2"]);
    expect(s.subtasks["api-sub-2"]!.round).toBe(2);
    expect(decideNext(s)).toEqual({ kind: "wait" });
  });
});

describe("aggregate", () => {
  const three = () => withBatch([["src/a.ts", "src/b.ts"], ["src/c.ts"], ["src/d.ts"]]);

  it("given every subtask complete and merged or skipped, when aggregated, then the parent is complete", () => {
    let s = three();
    s = settle(s, "api-sub-1", "complete", "merged");
    s = settle(s, "api-sub-2", "complete", "merged");
    s = settle(s, "api-sub-3", "complete", "skipped");
    expect(aggregateStatus(s)).toBe("complete");
  });

  it("given some subtasks landed and some not, when aggregated, then the parent is partial", () => {
    let s = three();
    s = settle(s, "api-sub-1", "complete", "merged");
    s = settle(s, "api-sub-2", "failed", "skipped");
    s = settle(s, "api-sub-3", "complete", "conflict");
    expect(aggregateStatus(s)).toBe("partial");
    let p = three();
    p = settle(p, "api-sub-1", "partial", "merged");
    p = settle(p, "api-sub-2", "blocked", "skipped");
    p = settle(p, "api-sub-3", "failed", "skipped");
    expect(aggregateStatus(p)).toBe("partial");
  });

  it("given no subtask landed, when aggregated, then the parent failed", () => {
    let s = three();
    s = settle(s, "api-sub-1", "complete", "conflict");
    s = settle(s, "api-sub-2", "failed", "skipped");
    s = settle(s, "api-sub-3", "partial", "failed");
    expect(aggregateStatus(s)).toBe("failed");
  });

  it("given finished subtasks, when aggregated, then files are unioned, notes prefixed and metrics summed", () => {
    let s = three();
    s = applyMerge(applyHandoff(s, handoffOf(s, "api-sub-1", "complete", 1)), "api-sub-1", 1, "merged", "");
    s = applyMerge(applyHandoff(s, handoffOf(s, "api-sub-2", "complete", 2)), "api-sub-2", 1, "merged", "");
    const h3 = { ...handoffOf(s, "api-sub-3", "complete", 3), filesChanged: ["src/d.ts", "src/a.ts"] };
    s = applyMerge(applyHandoff(s, h3), "api-sub-3", 1, "conflict", "src/d.ts");
    const h = aggregate(s, T0 + 60_000);
    expect(h).toMatchObject({ taskId: "api", runId: "run-1", status: "partial", branch: PARENT.branch });
    expect(h.head).toBeUndefined();
    expect(h.task).toEqual(PARENT);
    expect(h.filesChanged).toEqual(["src/a.ts", "src/b.ts", "src/c.ts", "src/d.ts"]);
    expect(h.concerns).toContain("[api-sub-1] concern of api-sub-1");
    expect(h.concerns).toContain("[api-sub-3] did not land: handoff complete, merge conflict (src/d.ts)");
    expect(h.suggestions).toEqual([
      "[api-sub-1] suggestion of api-sub-1",
      "[api-sub-2] suggestion of api-sub-2",
      "[api-sub-3] suggestion of api-sub-3",
    ]);
    expect(h.metrics).toEqual({
      linesAdded: 60,
      linesRemoved: 6,
      filesCreated: 6,
      filesModified: 12,
      tokensUsed: 600 + 10, // subtasks + the subplanner's own model tokens
      toolCallCount: 18,
      durationMs: 60_000, // wall time of the decomposition, not the sum of the subtasks' 3 × 5000
    });
    expect(h.summary).toContain("3 subtask(s) over 1 round(s): 2 complete, 0 partial, 1 failed");
  });

  it("given a finished decomposition, when finish is applied, then the aggregate is stored once and published once", () => {
    let s = withBatch([["src/a.ts"]]);
    s = settle(s, "api-sub-1", "complete", "merged");
    const done = finish(s, T0 + 1000);
    expect(done).toMatchObject({ phase: "done", finishedAt: T0 + 1000, outPublished: false });
    expect(done.aggregate?.metrics.durationMs).toBe(1000);
    expect(finish(done, T0 + 9999)).toBe(done);
    expect(decideNext(done)).toEqual({ kind: "publish-aggregate" });
    expect(decideNext(markOutPublished(done))).toEqual({ kind: "idle" });
    expect(applyHandoff(done, handoffOf(done, "api-sub-1"))).toBe(done);
  });
});

describe("decideParent", () => {
  it("given no stored decomposition, when a parent arrives, then it starts", () => {
    expect(decideParent(undefined, PARENT)).toBe("start");
  });

  it("given a stored decomposition, when the same attempt is redelivered, then it is ignored", () => {
    const s = initialDecomposition(PARENT, T0);
    expect(decideParent(s, PARENT)).toBe("ignore");
    expect(decideParent(finish(withBatch([["src/a.ts"]]), T0), PARENT)).toBe("ignore");
  });

  it("given a finished decomposition, when a later attempt arrives, then it restarts; while active it is ignored", () => {
    const retry = { ...PARENT, attempt: 2 };
    expect(decideParent(finish(withBatch([["src/a.ts"]]), T0), retry)).toBe("restart");
    expect(decideParent(applyBatch(initialDecomposition(PARENT, T0), [], [], 0), retry)).toBe("restart");
    expect(decideParent(withBatch([["src/a.ts"]]), retry)).toBe("ignore");
  });
});
