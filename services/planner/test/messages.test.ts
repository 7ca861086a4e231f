import { type AcceptedRun, emptyMetrics, type Handoff, type HandoffStatus } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { followUpMessage, initialMessage, type RepoSnapshot, seenState } from "../src/domain/messages.ts";
import {
  applyHandoff as applyHandoffWith,
  applyMerge as applyMergeWith,
  applyPlan,
  buildTasks,
  initialRunState,
  type MergeOutcome,
  type RunState,
} from "../src/domain/run.ts";

const POLICY = { branchPrefix: "worker/", maxConflictFixes: 30, fallbackModel: undefined };
const applyHandoff = (s: RunState, h: Handoff) => applyHandoffWith(s, h, POLICY);
const applyMerge = (s: RunState, id: string, outcome: MergeOutcome, detail: string) =>
  applyMergeWith(s, { taskId: id, attempt: s.tasks[id]?.task.attempt ?? 1, outcome, detail }, POLICY);

const RUN: AcceptedRun = {
  runId: "run-1",
  prompt: "Build a todo REST API with users and sessions",
  repo: "/tmp/target",
  baseBranch: "main",
  maxWorkers: 4,
};

/** The body of section `## title` of a message (up to the next section). */
function sectionOf(msg: string, title: string): string {
  const start = msg.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`no section ${title} in:\n${msg}`);
  const rest = msg.slice(start + title.length + 5);
  const end = rest.indexOf("\n## ");
  return end < 0 ? rest : rest.slice(0, end);
}

const commit = (sha: string, subject: string) => ({ sha, subject, author: "dev" });

function snapshot(over: Partial<RepoSnapshot> = {}): RepoSnapshot {
  return {
    head: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    files: ["package.json", "src/index.ts"],
    commits: [commit("aaaaaaaaaaaaaaaa", "initial")],
    docs: {},
    ...over,
  };
}

function handoff(s: RunState, taskId: string, status: HandoffStatus, summary: string): Handoff {
  const task = s.tasks[taskId]!.task;
  return {
    taskId,
    runId: s.run.runId,
    status,
    summary,
    filesChanged: [`src/${taskId}.ts`],
    concerns: status === "partial" ? ["no tests for edge cases"] : [],
    suggestions: [],
    metrics: emptyMetrics(),
    branch: task.branch,
    task,
  };
}

describe("initialMessage", () => {
  it("given a long SPEC and a large tree, then SPEC is capped at 20k chars and the tree at 300 entries", () => {
    const spec = `${"s".repeat(20_000)}${"Z".repeat(5_000)}`;
    const files = Array.from({ length: 350 }, (_, i) => `src/file-${String(i).padStart(3, "0")}.ts`);
    const msg = initialMessage(initialRunState(RUN, 0), snapshot({ files, docs: { spec } }));

    const specBody = sectionOf(msg, "SPEC.md");
    expect(specBody).toContain(`${"s".repeat(20_000)}\n…(truncated, 5000 more chars)`);
    expect(msg).not.toContain("Z");

    const tree = sectionOf(msg, "File tree");
    expect(tree).toContain("src/file-000.ts");
    expect(tree).toContain("src/file-299.ts");
    expect(tree).not.toContain("src/file-300.ts");
    expect(tree).toContain("…(50 more files)");
  });

  it("given a run, then the request, base branch, head and worker count are included; absent docs are left out", () => {
    const msg = initialMessage(
      initialRunState(RUN, 0),
      snapshot({ docs: { spec: "# Spec\nshort", agents: "be nice" } }),
    );
    expect(msg.startsWith(`# Request\n\n${RUN.prompt}\n`)).toBe(true);
    expect(msg).toContain("base branch `main` at aaaaaaaaaaaa.");
    expect(msg).toContain("Up to 4 workers");
    expect(sectionOf(msg, "SPEC.md")).toContain("# Spec\nshort");
    expect(sectionOf(msg, "AGENTS.md")).toContain("be nice");
    expect(msg).not.toContain("## FEATURES.json");
    expect(msg).not.toContain("## DECISIONS.md");
    expect(msg).not.toContain("truncated");
  });

  it("given more than 40 commits, then only the 40 most recent are listed", () => {
    const commits = Array.from({ length: 45 }, (_, i) =>
      commit(`c${String(i).padStart(2, "0")}${"0".repeat(14)}`, `commit ${i}`),
    );
    const msg = initialMessage(initialRunState(RUN, 0), snapshot({ commits }));
    const body = sectionOf(msg, "Recent commits");
    expect(body).toContain("c0000000 commit 0 (dev)");
    expect(body).toContain("commit 39 (dev)");
    expect(body).not.toContain("commit 40 (dev)");
  });
});

/**
 * A run after one plan: `old-task` was handed off, merged and already reported; `users` merged,
 * `sessions` conflicted, `docs` handed off with its merge pending (all three not yet reported);
 * `api` is still running.
 */
function afterHandoffs(): RunState {
  let s = initialRunState(RUN, 0);
  s = applyPlan(
    s,
    [],
    buildTasks(
      s,
      ["old-task", "users", "sessions", "docs", "api"].map((id) => ({
        id,
        description: `build the ${id} part`,
      })),
      { branchPrefix: "worker/" },
    ).tasks,
    0,
  );
  s = applyMerge(applyHandoff(s, handoff(s, "old-task", "complete", "old work")), "old-task", "merged", "");
  s = { ...s, pendingReports: [] };
  s = applyMerge(applyHandoff(s, handoff(s, "users", "complete", "users store done")), "users", "merged", "");
  s = applyHandoff(s, handoff(s, "sessions", "partial", "sessions mostly done"));
  s = applyMerge(s, "sessions", "conflict", "conflict in src/index.ts");
  s = applyHandoff(s, handoff(s, "docs", "complete", "x".repeat(400)));
  return {
    ...s,
    lastSweep: { sha: "bbbbbbbbbbbbbbbb", green: false, summary: "red: test" },
  };
}

describe("followUpMessage", () => {
  it("given new handoffs, then each is reported with its merge outcome; already reported ones are not", () => {
    const msg = followUpMessage(afterHandoffs(), snapshot(), { files: [], head: "" });
    expect(msg).toContain("# Update (iteration 2)");
    const reports = sectionOf(msg, "New handoffs");
    expect(reports).toContain("### users — complete, merge: merged\nusers store done");
    expect(reports).toContain(
      "### sessions — partial, merge: conflict (conflict in src/index.ts)\nsessions mostly done",
    );
    expect(reports).toContain("Concerns: no tests for edge cases");
    expect(reports).toContain("Files: src/users.ts");
    expect(reports).toContain("### docs — complete, merge pending");
    expect(reports).toContain(`${"x".repeat(300)}\n…(truncated, 100 more chars)`);
    expect(reports).not.toContain("old-task");
  });

  it("given tasks in flight, then the active section lists exactly the non-terminal tasks", () => {
    const active = sectionOf(
      followUpMessage(afterHandoffs(), snapshot(), { files: [], head: "" }),
      "Active tasks",
    );
    expect(active).toContain("- docs (p5): build the docs part");
    expect(active).toContain("- api (p5): build the api part");
    expect(active).not.toContain("users");
    expect(active).not.toContain("- sessions (");
    // its conflict filed a conflict-fix task, which is active
    expect(active).toContain("- sessions-cf (p1): Resolve the merge conflict");
    expect(active).not.toContain("old-task");
  });

  it("given a red last sweep, then the health section says so and asks for fix tasks", () => {
    const health = sectionOf(followUpMessage(afterHandoffs(), snapshot(), { files: [], head: "" }), "Health");
    expect(health).toContain("Last sweep of main at bbbbbbbb: red: test");
    expect(health).toContain("Emit targeted fix tasks");
  });

  it("given the tree changed, then only the added and removed files are listed", () => {
    const msg = followUpMessage(
      afterHandoffs(),
      snapshot({ files: ["package.json", "src/index.ts", "src/users.ts"] }),
      { files: ["package.json", "src/index.ts", "src/old.ts"], head: "" },
    );
    expect(sectionOf(msg, "File tree changes")).toContain("added: src/users.ts\nremoved: src/old.ts");
    expect(msg).not.toContain("full tree");
  });

  it("given new commits on top of the previous head, then only those are listed (stops at the previous head)", () => {
    const prevHead = "cccccccccccccccccccccccccccccccccccccccc";
    const msg = followUpMessage(
      afterHandoffs(),
      snapshot({
        commits: [
          commit("eeeeeeeeeeeeeeee", "merge sessions"),
          commit("dddddddddddddddd", "merge users"),
          commit(prevHead, "previous head"),
          commit("1111111111111111", "older"),
        ],
      }),
      { files: [], head: prevHead },
    );
    const commits = sectionOf(msg, "New commits");
    expect(commits).toContain("eeeeeeee merge sessions (dev)");
    expect(commits).toContain("dddddddd merge users (dev)");
    expect(commits).not.toContain("previous head");
    expect(commits).not.toContain("older");
  });

  it("given nothing new, then the sections say none", () => {
    let s = initialRunState(RUN, 0);
    s = { ...s, iteration: 3 };
    const head = "aaaaaaaaaaaaaaaa";
    const msg = followUpMessage(s, snapshot(), { files: ["package.json", "src/index.ts"], head });
    expect(sectionOf(msg, "New handoffs").trim()).toBe("none");
    expect(sectionOf(msg, "Active tasks").trim()).toBe("none");
    expect(sectionOf(msg, "New commits").trim()).toBe("none");
    expect(sectionOf(msg, "Health").trim()).toBe(
      "No sweep yet.\nMerge queue: 0 merged, 0 conflicts, 0 failed, 0 skipped, 0 waiting.",
    );
    expect(sectionOf(msg, "File tree changes")).toContain("\nadded: none\nremoved: none\n");
  });
});

describe("followUpMessage deltas of FEATURES.json / DECISIONS.md and merge-queue health", () => {
  const docs = { features: '[{"id":"a"}]', decisions: "# Decisions\n- use node:http" };
  const seen = seenState(snapshot({ docs }));

  it("given the documents unchanged since the model saw them, then they are not re-sent", () => {
    const msg = followUpMessage(afterHandoffs(), snapshot({ docs }), seen);
    expect(msg).not.toContain("FEATURES.json (changed)");
    expect(msg).not.toContain("DECISIONS.md (changed)");
  });

  it("given FEATURES.json changed, then only it is re-sent, in full", () => {
    const features = '[{"id":"a"},{"id":"b","description":"new"}]';
    const msg = followUpMessage(afterHandoffs(), snapshot({ docs: { ...docs, features } }), seen);
    expect(sectionOf(msg, "FEATURES.json (changed)")).toContain('"id":"b"');
    expect(msg).not.toContain("DECISIONS.md (changed)");
  });

  it("reports the merge queue's health with counts and success rate", () => {
    const health = sectionOf(followUpMessage(afterHandoffs(), snapshot(), seen), "Health");
    expect(health).toMatch(
      /Merge queue: \d+ merged, \d+ conflicts, \d+ failed, \d+ skipped, \d+ waiting; success rate \d+%\./,
    );
  });
});

describe("followUpMessage after a retried task", () => {
  const OPTS = { branchPrefix: "worker/" };
  /** One task `users`; its first attempt ended `failed`, so attempt 2 is filed (on the fallback model). */
  function afterFailedFirstAttempt(): RunState {
    let s = initialRunState(RUN, 0);
    s = applyPlan(s, [], buildTasks(s, [{ id: "users", description: "build users" }], OPTS).tasks, 0);
    const failed = { ...handoff(s, "users", "failed", "tests would not compile"), concerns: ["tsc errors"] };
    return applyHandoffWith(s, failed, { ...POLICY, fallbackModel: "glm-4.5-air" });
  }

  it("given attempt 2 was filed but has no handoff yet, then the replan message reports attempt 1 and that attempt 2 is not finished", () => {
    const s = afterFailedFirstAttempt();
    expect(s.tasks.users!.task.attempt).toBe(2);
    expect(s.tasks.users!.handoff).toBeUndefined();
    expect(s.pendingReports).toEqual(["users"]);

    const reports = sectionOf(followUpMessage(s, snapshot(), { files: [], head: "" }), "New handoffs");
    expect(reports).toContain(
      "### users — attempt 1 failed, retried as attempt 2 on glm-4.5-air\ntests would not compile\nConcerns: tsc errors\nAttempt 2: not finished yet.",
    );
  });

  it("given attempt 2's handoff arrived before the replan, then the task is reported once, with both attempts", () => {
    let s = afterFailedFirstAttempt();
    s = applyHandoff(s, handoff(s, "users", "complete", "users done on the second try"));
    expect(s.pendingReports).toEqual(["users", "users"]);

    const reports = sectionOf(followUpMessage(s, snapshot(), { files: [], head: "" }), "New handoffs");
    expect(reports.match(/### users/g)).toHaveLength(1);
    expect(reports).toContain("### users — attempt 1 failed, retried as attempt 2 on glm-4.5-air");
    expect(reports).toContain("Attempt 2: complete, merge pending\nusers done on the second try");
  });
});
