import { Handoff, Task } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import {
  type AgentOutcome,
  buildHandoff,
  emptyRepoOutcome,
  NO_HANDOFF_CONCERN,
  parseAgentHandoff,
  type RepoOutcome,
  summaryLine,
} from "../src/domain/handoff.ts";

const task = Task.parse({
  id: "t-1",
  runId: "run-1",
  description: "Add greet.",
  scope: ["src/greet.ts", "test/"],
  acceptance: "tests pass",
  branch: "worker/t-1",
  priority: 5,
  depth: 0,
  attempt: 1,
  repo: "/tmp/origin",
  baseBranch: "main",
});

const handoffJson = (status: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    status,
    summary: "Added greet.",
    filesChanged: ["src/greet.ts"],
    concerns: [],
    suggestions: ["docs"],
    ...extra,
  });

describe("parseAgentHandoff", () => {
  it("reads a fenced json block", () => {
    const text = `Done.\n\n\`\`\`json\n${handoffJson("complete")}\n\`\`\`\n`;
    const parsed = parseAgentHandoff(text);
    expect(parsed).toEqual({
      ok: true,
      handoff: {
        status: "complete",
        summary: "Added greet.",
        filesChanged: ["src/greet.ts"],
        concerns: [],
        suggestions: ["docs"],
      },
    });
  });

  it("takes the last fenced block, and falls back to an earlier one when the last is broken", () => {
    const two = `\`\`\`json\n${handoffJson("partial")}\n\`\`\`\nthen\n\`\`\`json\n${handoffJson("blocked")}\n\`\`\``;
    expect(parseAgentHandoff(two)).toMatchObject({ ok: true, handoff: { status: "blocked" } });
    const broken = `\`\`\`json\n${handoffJson("partial")}\n\`\`\`\n\`\`\`json\n{"status": "complete", oops\n\`\`\``;
    expect(parseAgentHandoff(broken)).toMatchObject({ ok: true, handoff: { status: "partial" } });
  });

  it("reads a bare object containing status, ignoring stray braces and braces inside strings", () => {
    const text = `I used a { in prose. Result: {"status": "Complete", "summary": "x {y} z", "filesChanged": [], "concerns": ["c"], "suggestions": []} bye`;
    expect(parseAgentHandoff(text)).toMatchObject({
      ok: true,
      handoff: { status: "complete", summary: "x {y} z", concerns: ["c"] },
    });
  });

  it("tolerates trailing commas and missing fields", () => {
    const text = '```json\n{"status": "partial", "concerns": ["a", 3, "b",],}\n```';
    expect(parseAgentHandoff(text)).toEqual({
      ok: true,
      handoff: { status: "partial", summary: "", filesChanged: [], concerns: ["a", "b"], suggestions: [] },
    });
  });

  it("rejects garbage and a wrong status with a reason", () => {
    expect(parseAgentHandoff("I am done, trust me.")).toEqual({
      ok: false,
      reason: "no JSON object with a status found",
    });
    const wrong = parseAgentHandoff(`\`\`\`json\n${handoffJson("done")}\n\`\`\``);
    expect(wrong).toEqual({ ok: false, reason: 'invalid handoff status "done"' });
    expect(parseAgentHandoff('```json\n{"status": \n```')).toMatchObject({ ok: false });
  });
});

const agent = (over: Partial<AgentOutcome> = {}): AgentOutcome => ({
  finalText: "",
  tokensUsed: 1200,
  toolCallCount: 3,
  stopReason: "stop",
  ...over,
});
const repo = (over: Partial<RepoOutcome> = {}): RepoOutcome => ({
  filesChanged: ["src/greet.ts"],
  linesAdded: 10,
  linesRemoved: 1,
  filesCreated: 1,
  filesModified: 0,
  head: "a".repeat(40),
  ...over,
});

describe("buildHandoff", () => {
  it("uses the agent's status and summary, git's files and metrics; the result satisfies the contract", () => {
    const parsed = parseAgentHandoff(`\`\`\`json\n${handoffJson("complete")}\n\`\`\``);
    const h = buildHandoff({ task, parsed, agent: agent(), repo: repo(), durationMs: 1234.4 });
    expect(Handoff.parse(h)).toEqual(h);
    expect(h).toMatchObject({
      status: "complete",
      summary: "Added greet.",
      filesChanged: ["src/greet.ts"],
      concerns: [],
      suggestions: ["docs"],
      head: "a".repeat(40),
      branch: "worker/t-1",
      metrics: {
        linesAdded: 10,
        linesRemoved: 1,
        filesCreated: 1,
        filesModified: 0,
        tokensUsed: 1200,
        toolCallCount: 3,
        durationMs: 1234,
      },
    });
  });

  it("never turns a missing handoff into complete", () => {
    const text = "All done!";
    const h = buildHandoff({
      task,
      parsed: parseAgentHandoff(text),
      agent: agent({ finalText: text }),
      repo: repo(),
      durationMs: 1,
    });
    expect(h.status).toBe("partial");
    expect(h.concerns[0]).toContain(NO_HANDOFF_CONCERN);
    expect(h.summary).toBe("All done!");
  });

  it("keeps blocked and failed statuses from the agent", () => {
    for (const status of ["blocked", "failed"] as const) {
      const parsed = parseAgentHandoff(handoffJson(status, { concerns: ["why"] }));
      const h = buildHandoff({ task, parsed, agent: agent(), repo: repo(), durationMs: 1 });
      expect(h.status).toBe(status);
      expect(h.concerns).toContain("why");
    }
  });

  it("fails on an empty response, an agent error, a timeout and an interruption", () => {
    const none = parseAgentHandoff("");
    const empty = buildHandoff({
      task,
      parsed: none,
      agent: agent({ tokensUsed: 0, toolCallCount: 0 }),
      repo: emptyRepoOutcome(),
      durationMs: 1,
    });
    expect(empty.status).toBe("failed");
    expect(empty.concerns[0]).toMatch(/empty response/);

    const ok = parseAgentHandoff(handoffJson("complete"));
    const error = buildHandoff({
      task,
      parsed: ok,
      agent: agent({ stopReason: "error", errorMessage: "503 nope" }),
      repo: repo(),
      durationMs: 1,
    });
    expect(error.status).toBe("failed");
    expect(error.concerns[0]).toBe("agent error: 503 nope");

    const late = buildHandoff({
      task,
      parsed: ok,
      agent: agent({ stopReason: "aborted" }),
      repo: repo(),
      durationMs: 1,
      timedOutAfterMs: 5000,
    });
    expect(late.status).toBe("failed");
    expect(late.concerns[0]).toBe("timed out after 5000 ms");

    const term = buildHandoff({
      task,
      parsed: none,
      agent: agent({ stopReason: "aborted" }),
      repo: repo(),
      durationMs: 1,
      interruptedBy: "SIGTERM",
    });
    expect(term).toMatchObject({ status: "failed", concerns: ["worker interrupted by SIGTERM"] });

    const crash = buildHandoff({
      task,
      parsed: none,
      agent: agent(),
      repo: emptyRepoOutcome(),
      durationMs: 1,
      failure: "worker crashed: boom",
    });
    expect(crash).toMatchObject({ status: "failed", concerns: ["worker crashed: boom"] });
    expect(crash.head).toBeUndefined();
  });

  it("keeps complete without changes but says so", () => {
    const parsed = parseAgentHandoff(handoffJson("complete", { filesChanged: [] }));
    const h = buildHandoff({ task, parsed, agent: agent(), repo: { ...emptyRepoOutcome() }, durationMs: 1 });
    expect(h.status).toBe("complete");
    expect(h.concerns).toContain("no changes");
  });

  it("reports files outside the scope and files the agent claims but git does not show", () => {
    const parsed = parseAgentHandoff(
      handoffJson("complete", { filesChanged: ["src/greet.ts", "./src/ghost.ts"] }),
    );
    const h = buildHandoff({
      task,
      parsed,
      agent: agent(),
      repo: repo({ filesChanged: ["src/greet.ts", "test/greet.test.ts", "package.json"] }),
      durationMs: 1,
      extraConcerns: ["push failed"],
    });
    expect(h.concerns).toEqual([
      "changed files outside the task scope: package.json",
      "agent reported files git shows unchanged: ./src/ghost.ts",
      "push failed",
    ]);
  });
});

describe("buildHandoff with repository failures", () => {
  const fix: Task = { ...task, kind: "conflict-fix", conflictBranch: "worker/t-0", scope: ["src/app.ts"] };

  it("given a complete agent but an unfinished rebase, then the handoff is failed with that concern first", () => {
    const parsed = parseAgentHandoff(handoffJson("complete", { concerns: ["resolved it"] }));
    const h = buildHandoff({
      task: fix,
      parsed,
      agent: agent(),
      repo: emptyRepoOutcome(),
      durationMs: 1,
      repoFailures: ["rebase not completed", "still conflicted: src/app.ts"],
    });
    expect(h.status).toBe("failed");
    expect(h.concerns.slice(0, 3)).toEqual([
      "rebase not completed",
      "still conflicted: src/app.ts",
      "resolved it",
    ]);
    expect(h.head).toBeUndefined();
  });

  it("given a timeout and conflict markers, then the timeout stays the first concern", () => {
    const h = buildHandoff({
      task,
      parsed: parseAgentHandoff(""),
      agent: agent({ stopReason: "aborted" }),
      repo: repo({ head: undefined }),
      durationMs: 1,
      timedOutAfterMs: 9000,
      repoFailures: ["conflict markers left in: src/greet.ts"],
    });
    expect(h).toMatchObject({
      status: "failed",
      concerns: ["timed out after 9000 ms", "conflict markers left in: src/greet.ts"],
    });
  });

  it("given a conflict-fix task, then the original branch's files are not reported as outside the scope", () => {
    const parsed = parseAgentHandoff(handoffJson("complete", { filesChanged: ["src/app.ts"] }));
    const changed = ["src/app.ts", "src/greet.ts", "test/greet.test.ts"];
    const h = buildHandoff({
      task: fix,
      parsed,
      agent: agent(),
      repo: repo({ filesChanged: changed }),
      durationMs: 1,
    });
    expect(h).toMatchObject({ status: "complete", concerns: [], filesChanged: changed });
  });
});

describe("summaryLine", () => {
  it("is the first line of the summary, at most 72 chars", () => {
    expect(summaryLine(parseAgentHandoff(handoffJson("complete", { summary: "one\ntwo" })), "")).toBe("one");
    expect(summaryLine({ ok: false, reason: "x" }, "x".repeat(100))).toHaveLength(72);
    expect(summaryLine({ ok: false, reason: "x" }, "")).toBe("(no summary)");
  });
});
