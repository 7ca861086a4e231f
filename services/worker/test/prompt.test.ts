import { Task } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { buildTaskPrompt } from "../src/domain/prompt.ts";

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
