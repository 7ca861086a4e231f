import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { git, makeRepo, tempDir } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { branchHead, ResetError, resetToRunStart } from "../src/reset.ts";
import type { RunRecord } from "../src/state.ts";

// `--reset` on real git repositories: back to where the last run started, nothing lost, never a remote's branch.

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir("longshot-reset-");
});
afterAll(async () => {
  await dir?.cleanup();
});

const record = (repo: string, runId: string, startSha: string, at: string): RunRecord => ({
  runId,
  repo,
  baseBranch: "main",
  startSha,
  submittedAt: at,
});

/** A repository whose main moved on by two commits since `start`. */
async function repoWithRun(name: string): Promise<{ repo: string; start: string; tip: string }> {
  const repo = join(dir.path, name);
  const start = await makeRepo(repo, { "a.txt": "a\n" });
  for (const f of ["b", "c"]) {
    await writeFile(join(repo, `${f}.txt`), `${f}\n`);
    await git(repo, "add", "-A");
    await git(repo, "commit", "-q", "-m", `run added ${f}`);
  }
  return { repo, start, tip: await git(repo, "rev-parse", "HEAD") };
}

describe("--reset", () => {
  it("moves a checked-out main back to the start of the last run and keeps the old tip under a ref", async () => {
    const { repo, start, tip } = await repoWithRun("checked-out");
    const older = record(repo, "run-old", "0".repeat(40), "2026-01-01T00:00:00Z");
    const r = await resetToRunStart(repo, "main", [
      older,
      record(repo, "run-last", start, "2026-01-02T00:00:00Z"),
    ]);
    expect(r).toMatchObject({ runId: "run-last", from: tip, to: start });
    expect(await branchHead(repo, "main")).toBe(start);
    expect(await git(repo, "rev-parse", r.keptAt!)).toBe(tip);
    expect(r.keptAt).toMatch(/^refs\/longshot\/pre-reset\/main\//);
    // The working tree follows (a clean reset --keep), nothing of the run's work is lost.
    expect(await git(repo, "status", "--porcelain")).toBe("");
    expect(await git(repo, "log", "--format=%s", r.keptAt!)).toContain("run added c");
    // Again: already there, nothing kept twice.
    expect(
      (await resetToRunStart(repo, "main", [record(repo, "run-last", start, "x")])).keptAt,
    ).toBeUndefined();
  });

  it("refuses when local changes would be overwritten, keeping the branch where it was", async () => {
    const { repo, start, tip } = await repoWithRun("dirty");
    await writeFile(join(repo, "c.txt"), "edited by hand\n");
    await expect(resetToRunStart(repo, "main", [record(repo, "run-1", start, "x")])).rejects.toThrow(
      ResetError,
    );
    expect(await branchHead(repo, "main")).toBe(tip);
  });

  it("moves a branch that is not checked out with a compare-and-set update", async () => {
    const { repo, start } = await repoWithRun("other-branch");
    await git(repo, "checkout", "-q", "-b", "elsewhere");
    await resetToRunStart(repo, "main", [record(repo, "run-1", start, "x")]);
    expect(await branchHead(repo, "main")).toBe(start);
  });

  it("never touches a remote, and needs a recorded run", async () => {
    await expect(
      resetToRunStart("https://example.com/org/repo.git", "main", [
        record("https://example.com/org/repo.git", "run-1", "a".repeat(40), "x"),
      ]),
    ).rejects.toThrow(/local repository only/);
    const { repo } = await repoWithRun("no-record");
    await expect(resetToRunStart(repo, "main", [])).rejects.toThrow(/no earlier run/);
  });
});
