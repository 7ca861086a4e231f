import { describe, expect, it } from "vitest";
import { decide } from "../src/domain/decide.ts";
import { branchOf, mergedRecordKey, repoKey } from "../src/domain/keys.ts";
import { makeHandoff } from "./fixtures.ts";

describe("decide", () => {
  it("given a complete handoff with a head and changed files, when nothing is known yet, then merge", () => {
    expect(decide(makeHandoff("t1"))).toEqual({ kind: "merge" });
  });

  it("given a partial handoff that pushed commits, then it is merged too", () => {
    expect(decide(makeHandoff("t1", { status: "partial" }))).toEqual({ kind: "merge" });
  });

  for (const status of ["failed", "blocked"] as const) {
    it(`given a ${status} handoff, then skip with the status as reason`, () => {
      const decision = decide(makeHandoff("t1", { status }));
      expect(decision).toEqual({ kind: "skip", reason: `handoff status is ${status}` });
    });
  }

  it("given a handoff without head, then skip: nothing was pushed", () => {
    const decision = decide(makeHandoff("t1", { head: undefined }));
    expect(decision.kind).toBe("skip");
    expect(decision.kind === "skip" && decision.reason).toMatch(/no head/);
  });

  it("given a handoff with no files changed, then skip", () => {
    expect(decide(makeHandoff("t1", { filesChanged: [] }))).toEqual({
      kind: "skip",
      reason: "no files changed",
    });
  });

  it("given a merged record for the task, when redelivered, then already-merged", () => {
    const decision = decide(makeHandoff("t1"), { recordedSha: "abcdef0123456789" });
    expect(decision.kind).toBe("already-merged");
  });

  it("given the head is already on the base, then already-merged", () => {
    expect(decide(makeHandoff("t1"), { headOnBase: true }).kind).toBe("already-merged");
    expect(decide(makeHandoff("t1"), { headOnBase: false })).toEqual({ kind: "merge" });
  });

  it("given a failed handoff with a record, then the status reason wins (it was never ours to merge)", () => {
    expect(decide(makeHandoff("t1", { status: "failed" }), { recordedSha: "abc" }).kind).toBe("skip");
  });
});

describe("keys", () => {
  it("keys merged records by run and task", () => {
    expect(mergedRecordKey(makeHandoff("t-9", { runId: "run-x" }))).toBe("run-x.t-9");
  });

  it("uses the handoff branch, falling back to the task branch", () => {
    expect(branchOf(makeHandoff("t1", { branch: "worker/custom" }))).toBe("worker/custom");
    const handoff = { ...makeHandoff("t1"), branch: "" };
    expect(branchOf(handoff)).toBe("worker/t1");
  });

  it("treats trailing slashes as the same repository", () => {
    expect(repoKey("/srv/repo/")).toBe(repoKey("/srv/repo"));
    expect(repoKey("https://h/x.git")).toBe("https://h/x.git");
  });
});
