import { Handoff, Task } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { failedHandoff, sandboxEnv, workerDeadlineMs } from "../src/index.ts";

const task = Task.parse({
  id: "t-9",
  runId: "run-1",
  description: "Do it.",
  scope: ["a.ts"],
  acceptance: "",
  branch: "worker/t-9",
  priority: 1,
  depth: 0,
  attempt: 2,
  repo: "/tmp/origin",
  baseBranch: "main",
});

describe("failedHandoff", () => {
  it("builds a valid failed handoff with zeroed metrics and the reason as summary and concern", () => {
    const h = failedHandoff(task, "sandbox timed out after 30 s", 30_012.6);
    expect(Handoff.parse(h)).toEqual(h);
    expect(h).toEqual({
      taskId: "t-9",
      runId: "run-1",
      status: "failed",
      summary: "sandbox timed out after 30 s",
      filesChanged: [],
      concerns: ["sandbox timed out after 30 s"],
      suggestions: [],
      metrics: {
        linesAdded: 0,
        linesRemoved: 0,
        filesCreated: 0,
        filesModified: 0,
        tokensUsed: 0,
        toolCallCount: 0,
        durationMs: 30_013,
      },
      branch: "worker/t-9",
      task,
    });
    expect("head" in h).toBe(false);
  });

  it("clamps a negative duration to 0", () => {
    expect(failedHandoff(task, "x", -5).metrics.durationMs).toBe(0);
  });
});

describe("workerDeadlineMs", () => {
  it("leaves a reserve of 20 %, at least 2 s, at most 2 min, never below half", () => {
    expect(workerDeadlineMs(60_000)).toBe(48_000);
    expect(workerDeadlineMs(8_000)).toBe(6_000);
    expect(workerDeadlineMs(3_000)).toBe(1_500);
    expect(workerDeadlineMs(30 * 60_000)).toBe(30 * 60_000 - 120_000);
    expect(workerDeadlineMs(1)).toBe(1);
  });
});

describe("sandboxEnv", () => {
  it("passes only the allowlist, the extras and the key", () => {
    const parent = {
      PATH: "/bin",
      HOME: "/home/x",
      LANG: "C.UTF-8",
      NATS_URL: "nats://secret:4222",
      NATS_CREDS: "/etc/creds",
      OPENAI_API_KEY: "sk-provider",
      GIT_COMMIT_NAME: "Bot",
      TMPDIR: "/tmp",
    };
    expect(sandboxEnv(parent, { TMPDIR: "/sandbox/tmp" }, "tok-123")).toEqual({
      PATH: "/bin",
      HOME: "/home/x",
      LANG: "C.UTF-8",
      GIT_COMMIT_NAME: "Bot",
      TMPDIR: "/sandbox/tmp",
      LONGSHOT_LLM_API_KEY: "tok-123",
    });
    expect(sandboxEnv(parent, {}, "")).not.toHaveProperty("LONGSHOT_LLM_API_KEY");
  });
});
