import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { createLogger } from "@longshot/log";
import { git, tempDir, waitFor } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCluster } from "../src/access.ts";
import { freePort, startEmbeddedCluster } from "../src/cluster.ts";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { readEvents } from "../src/events.ts";
import { alive, descendants, runCli, startCli } from "./cli-process.ts";
import { adminBus, makeListRepo, writeScript } from "./fixtures.ts";

// The embedded cluster as a service: a killed CLI leaves nothing running and `longshot resume` finishes its run; a
// killed nats-server is restarted and the run finishes; no model configured fails in seconds saying what to set.

const run = promisify(execFile);
const KEY = "sim-survive-key-8d1e5c";
const TASKS = ["add-first", "add-last", "add-second"];
let dir: Awaited<ReturnType<typeof tempDir>>;
let sim: SimLlmProcess;
let work: string;

beforeAll(async () => {
  dir = await tempDir("longshot-survive-");
  sim = await startSimLlmProcess(await writeScript(dir.path, 3), KEY);
  // The model settings live in ./.env of the directory the CLI runs in, nowhere else.
  work = join(dir.path, "work");
  await makeListRepo(join(work, "repo-kill-cli"));
  await writeFile(
    join(work, ".env"),
    `LLM_BASE_URL=${sim.url}\nLLM_API_KEY=${KEY}\nLLM_MODEL=${sim.model}\nMAX_WORKERS=3\n`,
  );
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  await dir?.cleanup();
});

/**
 * Every task of `runId` merged exactly once, each task's commit once on main, main's tests pass; each task handed
 * off exactly once, or — `brokerCrashed` — at least once: a SIGKILLed nats-server can lose an ack (the task is
 * redelivered and runs again) and its duplicate-window index (a repeated event id is stored again), which
 * at-least-once delivery allows; the merge stays exactly once.
 */
async function expectMergedOnce(
  events: { type: string; data: unknown }[],
  repo: string,
  { brokerCrashed = false } = {},
) {
  for (const type of ["task.finished", "merge.merged"]) {
    const perTask = TASKS.map(
      (t) => events.filter((e) => e.type === type && (e.data as { taskId: string }).taskId === t).length,
    );
    if (brokerCrashed && type === "task.finished")
      expect(
        perTask.every((n) => n >= 1),
        JSON.stringify({ type, perTask }),
      ).toBe(true);
    else expect({ type, perTask }).toEqual({ type, perTask: [1, 1, 1] });
  }
  const subjects = (await git(repo, "log", "--format=%s", "main")).split("\n");
  for (const t of TASKS) expect(subjects.filter((s) => s.startsWith(`${t}:`))).toHaveLength(1);
  await run(process.execPath, ["--test"], { cwd: repo });
}

describe("the embedded cluster outlives its parts", () => {
  it("without a model endpoint, the CLI exits non-zero within 10 s saying what to set", async () => {
    const empty = join(dir.path, "empty");
    await makeListRepo(join(empty, "repo"));
    const started = Date.now();
    const r = await runCli(["x", "--repo", "repo"], {
      cwd: empty,
      env: { LONGSHOT_STATE_DIR: join(dir.path, "state-none") },
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("no model endpoint configured");
    expect(r.stderr).toContain("LLM_BASE_URL=");
    // An endpoint nobody listens on is named as such.
    const port = await freePort();
    const dead = await runCli(["x", "--repo", "repo"], {
      cwd: empty,
      env: { LONGSHOT_STATE_DIR: join(dir.path, "state-none"), LLM_BASE_URL: `http://127.0.0.1:${port}/v1` },
    });
    expect(dead.code).toBe(2);
    expect(dead.stderr).toContain(`cannot reach LLM_BASE_URL (http://127.0.0.1:${port}/v1): ECONNREFUSED`);
  });

  it("SIGKILL of the CLI mid-run leaves no process behind; `longshot resume` completes the run green, each task merged once", async () => {
    const state = join(dir.path, "state-kill-cli");
    const env = { LONGSHOT_STATE_DIR: state };
    const cli = startCli(["Add list helpers", "--repo", "repo-kill-cli", "--run-id", "run-kill-cli"], {
      cwd: work,
      env,
    });
    await cli.line(/merged {3}add-/);
    const tree = descendants(cli.child.pid!);
    expect(tree.length).toBeGreaterThanOrEqual(7); // nats-server, gateway, five services (and sandboxes)
    cli.child.kill("SIGKILL");
    await cli.exited;
    // Every process the CLI had started dies with it (the kernel signals them; nobody else is told to).
    await waitFor(() => tree.every((p) => !alive(p)), 20_000, 100);

    const resumed = await runCli(["resume", "run-kill-cli"], { cwd: work, env });
    expect(resumed.stdout).toContain("Run run-kill-cli: GREEN");
    expect(resumed.code).toBe(0);
    expect(`${resumed.stdout}${resumed.stderr}`).not.toMatch(/"level":\d+/);
    // Nothing is left after the resuming CLI either.
    const status = await runCli(["status", "run-kill-cli"], { cwd: work, env });
    expect(status.stdout).toMatch(/run run-kill-cli: green/);
    // The store, opened on its own (no cluster runs now), holds every task merged once.
    const store = await openCluster({
      env: {},
      stateDir: state,
      log: createLogger({ service: "test", level: "silent" }),
      offline: true,
    });
    try {
      expect(store.kind).toBe("offline");
      await expectMergedOnce(
        await readEvents(store.bus, "longshot.event.run-kill-cli.>"),
        join(work, "repo-kill-cli"),
      );
    } finally {
      await store.close();
    }
  });

  it("SIGKILL of the embedded nats-server mid-run: it is restarted on the same port and store, the run completes green", async () => {
    const repo = join(dir.path, "repo-kill-nats");
    await makeListRepo(repo);
    const cluster = await startEmbeddedCluster({
      stateDir: join(dir.path, "state-kill-nats"),
      env: { LLM_BASE_URL: sim.url, LLM_API_KEY: KEY, LLM_MODEL: sim.model, MAX_WORKERS: "3" },
    });
    try {
      const bus = await adminBus(cluster, "survive-nats");
      const runId = "run-kill-nats";
      const { followRunEvents } = await import("../src/follow.ts");
      let killed = false;
      const follow = await followRunEvents(bus, runId, (line) => {
        if (!killed && /merged {3}add-/.test(line)) {
          killed = true;
          process.kill(cluster.natsPids()[0]!, "SIGKILL");
        }
      });
      await bus.js.publish("longshot.request", JSON.stringify({ runId, prompt: "Add list helpers", repo }));
      const outcome = await follow.outcome;
      expect(killed).toBe(true);
      expect(cluster.natsRestarts()).toEqual([1]);
      expect(outcome).toMatchObject({ kind: "completed", summary: { status: "green", merged: 3 } });
      await expectMergedOnce(await readEvents(bus, `longshot.event.${runId}.>`), repo, {
        brokerCrashed: true,
      });
      await bus.close();
    } finally {
      await cluster.stop();
    }
  });
});
