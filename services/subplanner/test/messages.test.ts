import { type Handoff, Task, taskQueue } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import {
  applyBatch,
  applyHandoff,
  applyMerge,
  buildSubtasks,
  type DecompositionState,
  initialDecomposition,
} from "../src/domain/decomposition.ts";
import { followUpMessage, initialMessage, type RepoSnapshot } from "../src/domain/messages.ts";

const PARENT = Task.parse({
  id: "api",
  runId: "run-1",
  description: "Build the REST API with four routes",
  scope: ["src/a.ts", "src/b.ts", "src/c.ts", "src/d.ts"],
  acceptance: "npm test passes",
  branch: "worker/api",
  priority: 3,
  depth: 1,
  attempt: 1,
  repo: "/tmp/target",
  baseBranch: "main",
});
const REPO: RepoSnapshot = {
  head: "aaaaaaaaaaaaaaaa",
  files: ["package.json", "src/a.ts"],
  commits: [{ sha: "aaaaaaaaaaaaaaaa", subject: "initial", author: "Test" }],
  features: '{"features":[]}',
};

function batch(s: DecompositionState, scopes: string[][], head: string): DecompositionState {
  const raw = scopes.map((scope) => ({ description: `do ${scope.join(",")}`, scope }));
  return applyBatch(
    s,
    [],
    buildSubtasks(s.parent, raw, { branchPrefix: "w/", lastIndex: s.lastIndex }).tasks,
    0,
    head,
  );
}

function handoff(s: DecompositionState, id: string, summary: string): Handoff {
  const task = s.subtasks[id]!.task;
  return {
    taskId: id,
    runId: task.runId,
    status: "failed",
    summary,
    filesChanged: [],
    concerns: ["tsc: TS2304 cannot find name foo"],
    suggestions: [],
    metrics: {
      linesAdded: 0,
      linesRemoved: 0,
      filesCreated: 0,
      filesModified: 0,
      tokensUsed: 0,
      toolCallCount: 0,
      durationMs: 0,
    },
    branch: task.branch,
    task,
  };
}

describe("initialMessage", () => {
  it("given a parent and a snapshot, when rendered, then it carries the parent's fields and the base branch", () => {
    const m = initialMessage(PARENT, REPO, 10);
    for (const part of [
      "# Parent task: api",
      "priority: 3",
      "depth: 1",
      "  - src/d.ts",
      "Build the REST API with four routes",
      "npm test passes",
      "package.json",
      "aaaaaaaa initial (Test)",
      '{"features":[]}',
      "at most 10 subtasks",
    ])
      expect(m).toContain(part);
  });
});

describe("followUpMessage", () => {
  it("given a finished second round, when rendered, then it reports only that round and the new commits", () => {
    let s = batch(initialDecomposition(PARENT, 0), [["src/a.ts"]], "aaaaaaaaaaaaaaaa");
    s = batch(s, [["src/b.ts"]], "aaaaaaaaaaaaaaaa");
    s = applyMerge(
      applyHandoff(s, handoff(s, "api-sub-2", "could not compile")),
      "api-sub-2",
      1,
      "skipped",
      "failed",
    );
    const repo = {
      ...REPO,
      commits: [{ sha: "bbbbbbbbbbbbbbbb", subject: "merge api-sub-1", author: "Longshot" }, ...REPO.commits],
    };
    const m = followUpMessage(s, repo, 5, 10);
    expect(m).toContain("round 2 of at most 5");
    expect(m).toContain("### api-sub-2 — failed, merge: skipped (failed)");
    expect(m).toContain("could not compile");
    expect(m).toContain("TS2304");
    expect(m).not.toContain("### api-sub-1");
    expect(m).toContain("bbbbbbbb merge api-sub-1");
    expect(m).not.toContain("aaaaaaaa initial");
    expect(m).toContain("api-sub-1, api-sub-2");
  });
});

describe("taskQueue (libs/contracts routing)", () => {
  it("given ≥ 4 files below depth 3, when routed, then it is decomposed; otherwise executed", () => {
    expect(taskQueue({ scope: ["a", "b", "c", "d"], depth: 0 })).toBe("decompose");
    expect(taskQueue({ scope: ["a", "b", "c", "d"], depth: 2 })).toBe("decompose");
    expect(taskQueue({ scope: ["a", "b", "c", "d"], depth: 3 })).toBe("execute");
    expect(taskQueue({ scope: ["a", "b", "c"], depth: 0 })).toBe("execute");
  });

  it("given a conflict-fix task with a big scope, when routed, then it is executed", () => {
    expect(taskQueue({ scope: ["a", "b", "c", "d", "e"], depth: 0, kind: "conflict-fix" })).toBe("execute");
  });
});
