import { Task, WorkerInput } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { applyModelOverride } from "../src/domain/input.ts";

const input = WorkerInput.parse({
  task: Task.parse({
    id: "t-1",
    runId: "run-1",
    description: "Add greet.",
    scope: ["src/greet.ts"],
    acceptance: "",
    branch: "worker/t-1",
    priority: 5,
    depth: 0,
    attempt: 2,
    repo: "/tmp/origin",
    baseBranch: "main",
  }),
  repoDir: "/tmp/clone",
  systemPromptPath: "/tmp/worker.md",
  llm: { model: "primary", maxTokens: 4096 },
  timeoutMs: 60_000,
  bundlePath: "/tmp/out/branch.bundle",
});

describe("applyModelOverride", () => {
  it("given a task with a model, then that model replaces the dispatcher's and the rest is kept", () => {
    const out = applyModelOverride({ ...input, task: { ...input.task, model: "fallback" } });
    expect(out.llm).toEqual({ model: "fallback", maxTokens: 4096 });
    expect(out.task.model).toBe("fallback");
    expect(input.llm.model).toBe("primary");
  });

  it("given a task without a model, then the input is unchanged", () => {
    expect(applyModelOverride(input)).toBe(input);
  });
});
