import { Task } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { buildTaskPrompt, CONTEXT_HEADING } from "../src/domain/prompt.ts";

const task = Task.parse({
  id: "t-1",
  runId: "run-1",
  description: "Add a greet() function.",
  scope: ["src/greet.ts", "test/greet.test.ts"],
  acceptance: "npm test passes",
  branch: "worker/t-1-greet",
  priority: 5,
  depth: 0,
  attempt: 1,
  repo: "/tmp/origin",
  baseBranch: "main",
});

describe("buildTaskPrompt", () => {
  it("starts with the task header line", () => {
    expect(buildTaskPrompt(task).startsWith("## Task: t-1\n")).toBe(true);
  });

  it("contains description, scope, acceptance and branch in that order", () => {
    const prompt = buildTaskPrompt(task);
    const order = [
      "Add a greet() function.",
      "- src/greet.ts",
      "- test/greet.test.ts",
      "npm test passes",
      "worker/t-1-greet",
    ];
    const positions = order.map((s) => prompt.indexOf(s));
    expect(positions.every((p) => p > 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
  });

  it("asks for a fenced json handoff with all five fields", () => {
    const prompt = buildTaskPrompt(task);
    expect(prompt).toContain("```json");
    for (const field of ["status", "summary", "filesChanged", "concerns", "suggestions"]) {
      expect(prompt).toContain(`"${field}"`);
    }
    expect(prompt).toMatch(/complete \| partial \| blocked \| failed/);
  });

  it("says so when the scope or acceptance is empty", () => {
    const prompt = buildTaskPrompt({ ...task, scope: [], acceptance: " " });
    expect(prompt).toContain("(no files listed)");
    expect(prompt).toContain("(none given)");
  });
});

describe("buildTaskPrompt with context", () => {
  it("given a task with context, when the prompt is built, then a context section follows the acceptance", () => {
    const prompt = buildTaskPrompt({
      ...task,
      context: "Attempt 1 failed: npm test exits 1 in greet.test.ts\n",
    });
    const heading = prompt.indexOf(
      `${CONTEXT_HEADING}\nAttempt 1 failed: npm test exits 1 in greet.test.ts\n`,
    );
    expect(CONTEXT_HEADING).toBe("## Context from earlier attempts");
    expect(heading).toBeGreaterThan(prompt.indexOf("npm test passes"));
    expect(heading).toBeLessThan(prompt.indexOf("### Branch"));
  });

  it("given no context or a blank one, when the prompt is built, then there is no context section", () => {
    expect(buildTaskPrompt(task)).not.toContain(CONTEXT_HEADING);
    expect(buildTaskPrompt({ ...task, context: "  \n" })).not.toContain(CONTEXT_HEADING);
  });
});

describe("buildTaskPrompt for conflict-fix tasks", () => {
  const fix: Task = {
    ...task,
    id: "t-1-fix",
    kind: "conflict-fix",
    branch: "worker/t-1-fix",
    conflictBranch: "worker/t-1-greet",
    scope: ["src/greet.ts"],
  };

  it("given a rebase stopped on conflicts, then it lists the files and the resolve/add/continue loop", () => {
    const prompt = buildTaskPrompt(fix, {
      rebase: { inProgress: true, files: ["src/greet.ts", "src/app.ts"] },
    });
    expect(prompt.startsWith("## Task: t-1-fix\n")).toBe(true);
    expect(prompt).toContain("a copy of `worker/t-1-greet` in the middle of a rebase onto `origin/main`");
    expect(prompt).toContain("git diff --name-only --diff-filter=U");
    expect(prompt).toContain("- src/greet.ts\n- src/app.ts\n");
    expect(prompt).toContain("keeping the intent of the branch's change and of what landed on `main`");
    const add = prompt.indexOf("`git add`");
    const cont = prompt.indexOf("GIT_EDITOR=true git rebase --continue");
    const repeat = prompt.indexOf("repeat until it finishes");
    const tests = prompt.indexOf("Run the build and the tests");
    expect(add).toBeGreaterThan(0);
    expect([add, cont, repeat, tests]).toEqual([add, cont, repeat, tests].sort((a, b) => a - b));
    expect(prompt).toContain("never push");
    expect(prompt).not.toContain("started from `main`");
    expect(prompt).toContain('"status": "complete | partial | blocked | failed"');
  });

  it("given a rebase that finished cleanly, then it asks to verify, not to resolve", () => {
    const prompt = buildTaskPrompt(fix, { rebase: { inProgress: false, files: [] } });
    expect(prompt).toContain("rebased onto `origin/main`");
    expect(prompt).toContain("finished without conflicts");
    expect(prompt).not.toContain("rebase --continue");
    expect(prompt).toContain("run the build and the tests");
  });

  it("given a normal task, then the prompt has no rebase instructions", () => {
    const prompt = buildTaskPrompt(task, { rebase: { inProgress: true, files: ["x"] } });
    expect(prompt).not.toContain("rebase");
    expect(prompt).toContain("started from `main`. Do not switch branches.");
  });

  it("given context and a conflict, then the context comes before the branch section", () => {
    const prompt = buildTaskPrompt(
      { ...fix, context: "merge of worker/t-1-greet conflicted twice" },
      { rebase: { inProgress: true, files: ["src/greet.ts"] } },
    );
    expect(prompt.indexOf(CONTEXT_HEADING)).toBeGreaterThan(prompt.indexOf("### Acceptance"));
    expect(prompt.indexOf(CONTEXT_HEADING)).toBeLessThan(prompt.indexOf("### Branch"));
  });
});
