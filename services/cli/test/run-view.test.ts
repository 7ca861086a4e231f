import { describe, expect, it } from "vitest";
import type { StoredEvent } from "../src/events.ts";
import { applyEvent, countByState, emptyRunView, formatDuration, runRates } from "../src/run-view.ts";

let n = 0;
const ev = (type: string, data: unknown, ts = "2026-01-01T00:00:00.000Z"): StoredEvent =>
  ({ id: `e${n++}`, type, ts, runId: "run-1", data }) as StoredEvent;
const task = (id: string, attempt = 1) => ({
  task: { id, description: `do ${id}`, kind: "plan", priority: 5, attempt, scope: [] },
});

describe("run view (folded from a run's events)", () => {
  it("follows tasks from planned to merged, with the merge queue in finishing order", () => {
    const v = emptyRunView("run-1");
    applyEvent(v, ev("run.accepted", { runId: "run-1", repo: "/r", baseBranch: "main", maxWorkers: 2 }));
    applyEvent(v, ev("task.planned", task("a")));
    applyEvent(v, ev("task.planned", task("b")));
    applyEvent(
      v,
      ev("task.started", { taskId: "a", branch: "w/a", sandbox: "local" }, "2026-01-01T00:00:01Z"),
    );
    applyEvent(
      v,
      ev("task.started", { taskId: "b", branch: "w/b", sandbox: "local" }, "2026-01-01T00:00:01Z"),
    );
    expect(countByState(v)).toMatchObject({ running: 2 });
    const fin = (id: string, status: string) =>
      ev(
        "task.finished",
        { taskId: id, status, summary: "", durationMs: 1, tokensUsed: 10 },
        "2026-01-01T00:00:05Z",
      );
    applyEvent(v, fin("b", "complete"));
    applyEvent(v, fin("a", "partial"));
    expect(v.mergeQueue).toEqual(["b", "a"]);
    applyEvent(v, ev("merge.merged", { taskId: "b", attempt: 1, sha: "abc" }));
    expect(v.mergeQueue).toEqual(["a"]);
    applyEvent(v, ev("merge.conflict", { taskId: "a", attempt: 1, files: ["x"] }));
    expect(v.mergeQueue).toEqual([]);
    expect(countByState(v)).toMatchObject({ merged: 1, conflict: 1 });
    expect(v.tokens).toBe(20);
    expect(runRates(v, Date.parse("2026-01-01T01:00:00Z"))).toEqual({ commitsPerHour: 1, mergeRate: 0.5 });
  });

  it("keeps a task running when its task.planned is stored after its task.started; a retry starts over", () => {
    const v = emptyRunView("run-1");
    applyEvent(
      v,
      ev("task.started", { taskId: "a", branch: "w/a", sandbox: "local" }, "2026-01-01T00:00:01Z"),
    );
    applyEvent(v, ev("task.planned", task("a")));
    expect(v.tasks.get("a")).toMatchObject({ state: "running", description: "do a" });
    expect(v.tasks.get("a")!.startedAt).toBe(Date.parse("2026-01-01T00:00:01Z"));
    applyEvent(
      v,
      ev("task.finished", { taskId: "a", status: "failed", summary: "", durationMs: 1, tokensUsed: 0 }),
    );
    expect(v.mergeQueue).toEqual([]);
    applyEvent(v, ev("task.planned", task("a", 2)));
    expect(v.tasks.get("a")).toMatchObject({ state: "planned", attempt: 2 });
  });

  it("ends with the summary's status, and says when a check timed out", () => {
    const v = emptyRunView("run-1");
    applyEvent(v, ev("run.cancelled", { reason: "wrong request", by: "me" }));
    applyEvent(
      v,
      ev("health.swept", {
        sha: "s1",
        green: false,
        checks: [
          {
            name: "test",
            command: "npm test",
            ok: false,
            exitCode: null,
            output: "x\n[timed out after 600000 ms]",
            durationMs: 1,
          },
          { name: "build", command: "b", ok: true, exitCode: 0, output: "", durationMs: 1 },
        ],
        conflictFiles: [],
        durationMs: 1,
      }),
    );
    expect(v.health).toMatchObject({ green: false, failing: ["test timed out after 600 s"], final: false });
    applyEvent(v, ev("run.completed", { status: "cancelled", tokens: 5, reason: "wrong request" }));
    expect(v.status).toBe("cancelled");
    expect(v.cancelled).toEqual({ reason: "wrong request", by: "me" });
  });

  it("formats durations for people", () => {
    expect([formatDuration(4_000), formatDuration(185_000), formatDuration(7_800_000)]).toEqual([
      "4 s",
      "3 min 5 s",
      "2 h 10 min",
    ]);
  });
});
