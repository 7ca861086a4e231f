import type { AttemptRecord } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import type { StoredEvent } from "../src/events.ts";
import { formatAttempt, formatHistoryTable, mergeVerdicts, verdictOf, verdictText } from "../src/history.ts";

const ev = (type: string, data: Record<string, unknown>): StoredEvent =>
  ({
    id: `${type}-${JSON.stringify(data)}`,
    type,
    ts: "2026-01-01T00:00:00.000Z",
    runId: "r",
    data,
  }) as StoredEvent;

const rec = (taskId: string, attempt: number, over: Partial<AttemptRecord["handoff"]> = {}): AttemptRecord =>
  ({
    runId: "r",
    taskId,
    attempt,
    model: "glm-5",
    harness: "pi",
    sandbox: "local",
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:01:05.000Z",
    timedOut: false,
    handoff: {
      taskId,
      runId: "r",
      status: "complete",
      summary: "did it\nin detail",
      filesChanged: ["a.ts"],
      concerns: [],
      suggestions: [],
      metrics: {
        linesAdded: 12,
        linesRemoved: 3,
        filesCreated: 1,
        filesModified: 1,
        tokensUsed: 5000,
        toolCallCount: 7,
        durationMs: 65000,
      },
      branch: `worker/${taskId}`,
      head: "b".repeat(40),
      ...over,
    },
  }) as AttemptRecord;

describe("attempt history views", () => {
  it("takes the merge queue's last verdict per attempt", () => {
    const v = mergeVerdicts([
      ev("merge.verified", { taskId: "a", attempt: 1, commit: "c".repeat(40) }),
      ev("merge.merged", { taskId: "a", attempt: 1, sha: "d".repeat(40), verified: true }),
      ev("merge.rejected", {
        taskId: "b",
        attempt: 1,
        reason: "1 test failed\nmore",
        check: { name: "test" },
      }),
      ev("merge.merged", { taskId: "b", attempt: 2, sha: "e".repeat(40) }),
      ev("task.finished", { taskId: "c", attempt: 1 }),
    ]);
    expect(verdictText(verdictOf(v, rec("a", 1)))).toBe(`merged at ${"d".repeat(12)} (verified)`);
    expect(verdictText(verdictOf(v, rec("b", 1)))).toBe("rejected: test failed: 1 test failed");
    expect(verdictText(verdictOf(v, rec("b", 2)))).toBe(`merged at ${"e".repeat(12)}`);
    expect(verdictOf(v, rec("c", 1))).toBeUndefined();
  });

  it("prints a row per attempt and an attempt in full", () => {
    const failed = rec("b", 1, { status: "failed", head: undefined, concerns: ["x"] });
    const v = mergeVerdicts([
      ev("merge.skipped", { taskId: "b", attempt: 1, reason: "handoff status is failed" }),
    ]);
    const rows = formatHistoryTable([rec("a", 1), failed], v);
    expect(rows[0]).toMatch(
      /^TASK +ATTEMPT +STATUS +MODEL +HARNESS +TOOLS +DIFF +TOKENS +TIME +MERGE QUEUE$/,
    );
    expect(rows[1]).toMatch(/^a +1 +complete +glm-5 +pi +7 +\+12 -3 2f +5000 +1 min 5 s +-$/);
    expect(rows[2]).toMatch(/^b +1 +failed .* skipped: handoff status is failed$/);
    const lines = formatAttempt(failed, verdictOf(v, failed));
    expect(lines[0]).toBe(
      "b attempt 1: failed, model glm-5, pi harness, local sandbox, started 2026-01-01T00:00:00.000Z, took 1 min 5 s",
    );
    expect(lines).toContain("  summary     did it");
    expect(lines).toContain("  concerns    x");
    expect(lines).toContain("  branch      worker/b (nothing pushed)");
    expect(lines).toContain("  merge queue skipped: handoff status is failed");
  });
});
