/**
 * `longshot demo` with the merge queue verifying before landing (#12), as a user runs it: the CLI process starts
 * its embedded cluster, builds the example todo API with the scripted offline model and must exit 0 (main
 * green). Then every commit of main's first-parent history, from the initial skeleton on, gets the target's
 * check set run on it in a real bubblewrap sandbox (`checkCommit`, what the reconciler and the merge queue run):
 * all must pass. On the way, email-validation's first attempt (its change breaks an existing test) must have
 * been rejected before it landed, and its second attempt must have landed green. About 2.5 minutes on 2 cores.
 */
import { spawn } from "node:child_process";
import { chmod, mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { createMirrors } from "@longshot/git";
import { createLogger } from "@longshot/log";
import { checkCommit, createLocalBackend, createSandboxProvider } from "@longshot/sandbox";
import { git, tempDir } from "@longshot/testkit";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "../src/cluster.ts";

const log = createLogger({ service: "demo-test", level: process.env.LOG_LEVEL ?? "silent" });

/** Runs `longshot demo` to its end; resolves with its exit code and output. */
function runDemo(env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, "services/cli/src/main.ts"), "demo"], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.once("exit", (code) => resolve({ code, out }));
  });
}

describe("longshot demo with merge queue verification", () => {
  let demoDir: string | undefined;
  let work: Awaited<ReturnType<typeof tempDir>> | undefined;

  afterAll(async () => {
    if (demoDir) await rm(demoDir, { recursive: true, force: true });
    await work?.cleanup();
  });

  it("ends green; the breaking change is rejected before it lands and its retry lands; every commit on main passes the checks", async () => {
    const env = { ...process.env };
    delete env.NATS_URL;
    delete env.MERGE_VERIFY;
    delete env.NODE_OPTIONS;
    delete env.NODE_TEST_CONTEXT;
    const { code, out } = await runDemo(env);
    const repo = /^demo repository: (\S+)$/m.exec(out)?.[1];
    expect(repo, out.slice(-3000)).toBeDefined();
    demoDir = join(repo!, "..");
    expect(code, out.slice(-3000)).toBe(0);
    expect(out).toMatch(/^Run run-\S+: GREEN$/m);

    // The merge queue rejected email-validation's first attempt (it breaks test/platform.test.ts) ...
    expect(out).toMatch(/rejected email-validation \(attempt 1\): test fails on main with it/);
    // ... the planner retried it with the failure as context, and the retry landed.
    expect(out).toMatch(/planned {2}email-validation \(p3, attempt 2/);
    const landed = [...out.matchAll(/merged {3}email-validation → ([0-9a-f]{8})/g)].map((m) => m[1]);
    expect(landed).toHaveLength(1);
    const platformTest = await git(repo!, "show", `${landed[0]}:test/platform.test.ts`);
    expect(platformTest).toContain("email must be a valid email address");
    // No reconciler fix task was needed: main never went red.
    expect(out).toMatch(/fix tasks {3}0 \(reconciler\)/);

    // Every commit of main's first-parent history, from the run's start (the initial skeleton), passes the
    // target's checks, each in its own sandbox.
    const commits = (await git(repo!, "rev-list", "--first-parent", "--reverse", "main")).split("\n");
    expect(commits.length).toBeGreaterThanOrEqual(15);
    work = await tempDir("longshot-demo-walk-");
    await chmod(work.path, 0o711);
    await mkdir(join(work.path, "sandboxes"), { mode: 0o711 });
    const provider = createSandboxProvider({
      backend: createLocalBackend({ isolation: "bwrap", tmpRoot: join(work.path, "sandboxes"), log }),
      mirrors: createMirrors(join(work.path, "mirrors")),
      log,
      limits: { memoryMb: 2048, pidsMax: 512 },
    });
    await provider.mirror(repo!).sync();
    const red: string[] = [];
    let next = 0;
    const walker = async () => {
      for (let i = next++; i < commits.length; i = next++) {
        const sha = commits[i]!;
        const r = await checkCommit(
          provider,
          { repo: repo!, ref: "refs/heads/main", commit: sha },
          { overrides: {}, timeoutMs: 180_000, installNetwork: false },
        );
        expect(r.checks.map((c) => c.name)).toEqual(["test", "conflict-markers"]);
        if (!r.green) red.push(`${sha.slice(0, 8)}: ${r.checks.find((c) => !c.ok)?.output.slice(-500)}`);
      }
    };
    await Promise.all([walker(), walker()]);
    expect(red, `red commits on main:\n${red.join("\n")}`).toEqual([]);
    // The walk covered the merged work: the final tree has every feature's route.
    expect(await readFile(join(repo!, "src/app.ts"), "utf8")).toMatch(/todoDelete|todo-delete/);
  }, 900_000);
});
