import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeRepo, processesWith, tempDir, waitFor } from "@longshot/testkit";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { readClusterRecord } from "../src/state.ts";
import { alive, type CliProcess, runCli, startCli } from "./cli-process.ts";
import { listScript, makeListRepo } from "./fixtures.ts";

// Every command of the CLI as a user runs it, each as its own process, against one real cluster run by
// `longshot up` (settings in ./.env of the working directory): attach to a run published with nothing but NATS,
// runs, status, logs, cancel, --version, and the store read after the cluster's CLI exited.

const KEY = "sim-commands-key-51c0";
const SLEEP = "sleep 3702";
let dir: Awaited<ReturnType<typeof tempDir>>;
let sim: SimLlmProcess;
let up: CliProcess;
let work: string;
let env: Record<string, string>;
let submitter: NatsConnection;

beforeAll(async () => {
  dir = await tempDir("longshot-commands-");
  work = join(dir.path, "work");
  const list = listScript(3);
  const sleeper = (id: string) => ({
    name: id,
    match: { system: "You are a worker", user: `## Task: ${id}\n` },
    turns: [{ toolCalls: [{ name: "bash", arguments: { command: SLEEP } }] }, { content: "never" }],
  });
  const script = {
    model: list.model,
    conversations: [
      {
        name: "planner (sleep)",
        match: { system: "You are the root planner", user: "Sleep" },
        turns: [
          {
            content: JSON.stringify({
              tasks: ["nap-a", "nap-b"].map((id) => ({ id, description: id, scope: [`${id}.txt`] })),
            }),
          },
          { content: JSON.stringify({ tasks: [] }) },
        ],
      },
      sleeper("nap-a"),
      sleeper("nap-b"),
      ...list.conversations,
    ],
  };
  const scriptPath = join(dir.path, "script.json");
  await writeFile(scriptPath, JSON.stringify(script));
  sim = await startSimLlmProcess(scriptPath, KEY);
  await makeListRepo(join(work, "repo"));
  await makeRepo(join(work, "naps"), { "README.md": "# naps\n" });
  await writeFile(
    join(work, ".env"),
    `LLM_BASE_URL=${sim.url}\nLLM_API_KEY=${KEY}\nLLM_MODEL=${sim.model}\nMAX_WORKERS=3\n`,
  );
  env = { LONGSHOT_STATE_DIR: join(dir.path, "state") };
  up = startCli(["up"], { cwd: work, env });
  await up.line(/^ready$/, 90_000);
  const field = (name: string) => up.stdout().match(new RegExp(`^${name}=(.*)$`, "m"))![1]!;
  submitter = await connect({
    servers: field("NATS_URL"),
    user: field("NATS_USER"),
    pass: field("NATS_PASSWORD"),
  });
}, 120_000);

afterAll(async () => {
  await submitter?.close();
  if (up && up.child.exitCode === null) {
    up.child.kill("SIGTERM");
    await up.exited;
  }
  await sim?.stop();
  await dir?.cleanup();
});

describe("longshot commands on a real cluster", () => {
  it("--version prints the version", async () => {
    const r = await runCli(["--version"], { cwd: work, env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^longshot 0\.1\.0 \([0-9a-f]{7,}\), Node \d+\.\d+\.\d+\n$/);
  });

  it("gives each child only its environment: the provider key (from ./.env) reaches the gateway alone", async () => {
    const rec = (await readClusterRecord(env.LONGSHOT_STATE_DIR!))!;
    const environ = async (pid: number) =>
      Object.fromEntries(
        (await readFile(`/proc/${pid}/environ`, "utf8"))
          .split("\0")
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
      ) as Record<string, string>;
    expect(Object.keys(rec.pids)).toEqual(
      expect.arrayContaining(["nats-n1", "llm-gateway", "planner", "dispatcher"]),
    );
    for (const [name, pid] of Object.entries(rec.pids)) {
      const e = await environ(pid);
      const hasKey = Object.values(e).some((v) => v.includes(KEY));
      expect({ name, hasKey }).toEqual({ name, hasKey: name === "llm-gateway" });
      if (name.startsWith("nats-")) expect(Object.keys(e).sort(), name).toEqual(["PATH"]);
      // Each service holds its own NATS user, never another's.
      else expect(e.NATS_USER, name).toBe(name === "llm-gateway" ? "gateway" : name);
    }
    expect((await environ(rec.pids.dispatcher!)).LLM_BASE_URL).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
  });

  it("attach follows a run published with nothing but NATS (the submitter user) to its green end", async () => {
    submitter.publish(
      "longshot.request",
      JSON.stringify({ runId: "run-cmd-1", prompt: "Add list helpers", repo: join(work, "repo") }),
    );
    const r = await runCli(["attach", "run-cmd-1"], { cwd: work, env });
    expect(r.stdout).toContain("attached to run run-cmd-1");
    expect(r.stdout).toContain("Run run-cmd-1: GREEN");
    expect(r.stdout).toMatch(/merged {6}3/);
    expect(r.code).toBe(0);
  });

  it("runs, status and logs show the run", async () => {
    const runs = await runCli(["runs"], { cwd: work, env });
    expect(runs.code).toBe(0);
    expect(runs.stdout).toMatch(/^RUN +STATUS +AGE +TASKS +MERGED +TOKENS +COST +REPO$/m);
    expect(runs.stdout).toMatch(/^run-cmd-1 +green +\d+ s ago +3 +3 +[1-9]\d* +- +\S+\/repo$/m);

    const status = await runCli(["status", "run-cmd-1"], { cwd: work, env });
    expect(status.code).toBe(0);
    expect(status.stdout).toContain("run run-cmd-1: green");
    expect(status.stdout).toMatch(/tasks {7}3 \(merged 3\)/);
    expect(status.stdout).toContain("merge queue empty");
    expect(status.stdout).toMatch(/main {8}green at [0-9a-f]{8} \[final sweep\]/);

    const logs = await runCli(["logs", "run-cmd-1", "--task", "add-last"], { cwd: work, env });
    expect(logs.code).toBe(0);
    const [eventPart, attempt] = logs.stdout.split(/^(?=add-last attempt 1: )/m);
    const lines = eventPart!.trim().split("\n");
    expect(lines.every((l) => l.includes("[add-last]"))).toBe(true);
    // Then the attempt from the attempt history, with the merge queue's verdict and the worker's own lines, every
    // one (the events coalesce them), ending with its handoff.
    expect(attempt).toMatch(/^add-last attempt 1: complete, model sim-list, pi harness, local sandbox/);
    expect(attempt).toMatch(/^ {2}merge queue merged at [0-9a-f]{12}/m);
    expect(attempt).toMatch(/^ {4}\S+Z worker started on worker\/add-last/m);
    expect(attempt).toMatch(/^ {4}\S+Z tool edit: src\/list\.ts/m);
    expect(attempt).toMatch(/^ {4}\S+Z handoff complete: added last\(\)/m);
    // Every attempt of the run, one row each.
    const history = await runCli(["history", "run-cmd-1"], { cwd: work, env });
    expect(history.code, history.stderr).toBe(0);
    const rows = history.stdout.trim().split("\n");
    expect(rows).toHaveLength(4);
    expect(history.stdout).toMatch(
      /^add-last +1 +complete +sim-list +pi +3 +\+\d+ -\d+ \df +\d+ +\d+ s +merged at /m,
    );
    for (const type of ["task.planned", "task.started", "task.progress", "task.finished", "merge.merged"])
      expect(lines.some((l) => l.includes(` ${type} `))).toBe(true);
    // -f on a finished run prints everything and returns.
    const all = await runCli(["logs", "run-cmd-1", "-f"], { cwd: work, env });
    expect(all.code).toBe(0);
    expect(all.stdout.trim().split("\n").at(-1)).toContain("run.completed");

    const unknown = await runCli(["status", "run-nobody"], { cwd: work, env });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("no run run-nobody");
  });

  it("cancel stops a run: status cancelled, no sandbox left", async () => {
    const naps = startCli(["Sleep", "--repo", join(work, "naps"), "--run-id", "run-cmd-nap"], {
      cwd: work,
      env,
    });
    await naps.line(/started {2}nap-b|started {2}nap-a/);
    await waitFor(async () => (await processesWith(SLEEP)).length === 2, 60_000, 100);
    const r = await runCli(["cancel", "run-cmd-nap", "--reason", "changed my mind"], { cwd: work, env });
    expect(r.stdout).toContain("cancel of run-cmd-nap sent");
    expect(r.stdout).toContain("Run run-cmd-nap: CANCELLED — changed my mind");
    expect(r.code).toBe(0);
    // The submitting CLI sees the same end.
    expect(await naps.exited).toBe(1);
    expect(naps.stdout()).toContain("run cancelled by longshot-cli");
    await waitFor(async () => (await processesWith(SLEEP)).length === 0, 20_000, 100);
    const status = await runCli(["status", "run-cmd-nap"], { cwd: work, env });
    expect(status.stdout).toContain("run run-cmd-nap: cancelled (cancelled: changed my mind)");
  });

  it("after the cluster's CLI exits, nothing of it runs and runs/status/logs read the store", async () => {
    // A second CLI whose run is on this cluster (it joined it) is told when the cluster goes away.
    const joined = startCli(["Sleep", "--repo", join(work, "naps"), "--run-id", "run-cmd-joined"], {
      cwd: work,
      env,
    });
    await joined.line(/started {2}nap-/);
    const rec = (await readClusterRecord(env.LONGSHOT_STATE_DIR!))!;
    const pids = Object.values(rec.pids);
    expect(pids.length).toBeGreaterThanOrEqual(7);
    up.child.kill("SIGTERM");
    expect(await up.exited).toBe(130);
    // What the user saw: lines for people, no service log (JSON) on the terminal, also while stopping.
    expect(`${up.stdout()}${up.stderr()}`).not.toMatch(/"level":\d+/);
    expect(up.stderr()).toContain("stopping the cluster");
    expect(pids.filter(alive)).toEqual([]);
    expect(await readClusterRecord(env.LONGSHOT_STATE_DIR!)).toBeUndefined();
    expect(await joined.exited).toBe(1);
    expect(joined.stderr()).toMatch(
      /stopped \(its CLI, pid \d+, is gone\); run run-cmd-joined stays in .*`longshot resume run-cmd-joined`/,
    );

    const runs = await runCli(["runs"], { cwd: work, env });
    expect(runs.code).toBe(0);
    expect(runs.stdout).toMatch(/^run-cmd-1 +green/m);
    expect(runs.stdout).toMatch(/^run-cmd-nap +cancelled/m);
    expect(runs.stderr).toContain("no cluster running");
    const status = await runCli(["status", "run-cmd-1"], { cwd: work, env });
    expect(status.stdout).toContain("run run-cmd-1: green");
    const logs = await runCli(["logs", "run-cmd-1"], { cwd: work, env });
    expect(logs.stdout).toContain("run.completed");
    const history = await runCli(["history", "run-cmd-1", "--task", "add-first"], { cwd: work, env });
    expect(history.code, history.stderr).toBe(0);
    expect(history.stdout).toMatch(/^add-first attempt 1: complete/m);
    expect(history.stdout).toMatch(/^ {4}\S+Z handoff complete: added first\(\)/m);
  });
});
