import { failedHandoff, Handoff, Task } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { abortReason, workerDeadlineMs, workerEnv } from "../src/index.ts";

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

  it("keeps the agent's counters reported before the attempt was stopped", () => {
    const h = failedHandoff(task, "sandbox aborted by the dispatcher", 5000, { toolCalls: 3, tokens: 1200 });
    expect(h.metrics).toMatchObject({ toolCallCount: 3, tokensUsed: 1200, durationMs: 5000, linesAdded: 0 });
  });

  it("clamps a negative duration to 0", () => {
    expect(failedHandoff(task, "x", -5).metrics.durationMs).toBe(0);
  });
});

describe("abortReason", () => {
  it("says the dispatcher aborted the sandbox, and why when the signal carries a reason", () => {
    expect(abortReason(undefined)).toBe("sandbox aborted by the dispatcher");
    const plain = new AbortController();
    plain.abort();
    expect(abortReason(plain.signal.reason)).toBe("sandbox aborted by the dispatcher");
    expect(abortReason(new Error("stuck: no progress for 3 s (monitor)"))).toBe(
      "sandbox aborted by the dispatcher: stuck: no progress for 3 s (monitor)",
    );
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

describe("workerEnv", () => {
  it("passes only the allowlist, the sandbox's own base and the extras: no key, no NATS, not the host's HOME", () => {
    const parent = {
      PATH: "/host/bin",
      HOME: "/root",
      LANG: "C.UTF-8",
      NATS_URL: "nats://secret:4222",
      NATS_CREDS: "/etc/creds",
      OPENAI_API_KEY: "sk-provider",
      LLM_API_KEY: "sk-llm",
      GIT_COMMIT_NAME: "Bot",
      TMPDIR: "/tmp",
    };
    const base = { HOME: "/home/sandbox", TMPDIR: "/tmp", PATH: "/usr/bin:/bin" };
    expect(workerEnv(parent, base, { WORKER_COMMAND: "agent {prompt_file}", UNSET: undefined })).toEqual({
      LANG: "C.UTF-8",
      GIT_COMMIT_NAME: "Bot",
      HOME: "/home/sandbox",
      TMPDIR: "/tmp",
      PATH: "/usr/bin:/bin",
      WORKER_COMMAND: "agent {prompt_file}",
    });
  });
});
