import { execFile } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { git, type ModalEmulator, startModalEmulator, tempDir } from "@longshot/testkit";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EmbeddedCluster, startEmbeddedCluster } from "../src/cluster.ts";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { clusterDiagnosis, listScript, makeListRepo, runEvents } from "./fixtures.ts";

const run = promisify(execFile);

// The cluster with SANDBOX_PROVIDER=modal: the dispatcher's and the reconciler's sandboxes are Modal
// sandboxes, created through the real modal SDK over real gRPC, served by the Modal API emulator (whose
// sandboxes are bubblewrap boxes). Secrets of every kind are set, and none may show up in process lists,
// logs, events or a sandbox's environment.

const KEY = "sk-provider-modal-e2e-SECRET-5d1f";
const GIT_TOKEN = "ghp-modal-e2e-GITTOKEN-77aa";
const MODAL_SECRET = "as-modal-e2e-TOKENSECRET-91c3";

let dir: Awaited<ReturnType<typeof tempDir>>;
let sim: SimLlmProcess;
let emulator: ModalEmulator;
let cluster: EmbeddedCluster;
let nc: NatsConnection;
let repo: string;

beforeAll(async () => {
  dir = await tempDir("longshot-e2e-modal-");
  repo = join(dir.path, "target");
  await makeListRepo(repo);
  // The list script, with the first worker also writing its whole environment into the repository.
  const script = listScript(2);
  const first = script.conversations.find((c) => c.name === "worker add-first")!;
  first.turns.unshift({
    toolCalls: [{ name: "bash", arguments: { command: "env > sandbox-env.txt" } }],
  } as never);
  const scriptPath = join(dir.path, "script.json");
  await writeFile(scriptPath, JSON.stringify(script));
  sim = await startSimLlmProcess(scriptPath, KEY);
  emulator = await startModalEmulator({ tokenId: "ak-modal-e2e", tokenSecret: MODAL_SECRET });
  cluster = await startEmbeddedCluster({
    stateDir: join(dir.path, "state"),
    env: {
      LLM_BASE_URL: sim.url,
      LLM_API_KEY: KEY,
      LLM_MODEL: sim.model,
      MAX_WORKERS: "2",
      SANDBOX_PROVIDER: "modal",
      SANDBOX_IMAGE: "registry.example/longshot-sandbox:e2e",
      GIT_TOKEN,
      MODAL_SERVER_URL: emulator.url,
      MODAL_TOKEN_ID: "ak-modal-e2e",
      MODAL_TOKEN_SECRET: MODAL_SECRET,
      LOG_LEVEL: "debug",
    },
  });
  nc = await connect(cluster.client);
}, 60_000);

afterAll(async () => {
  await nc?.drain();
  await cluster?.stop();
  await emulator?.stop();
  await sim?.stop();
  await dir?.cleanup();
});

describe("cluster end to end on Modal sandboxes (emulator, real SDK)", () => {
  it("turns a plain request into merged commits on a green main; no secret leaks anywhere", async () => {
    const runId = "run-e2e-modal-1";
    const events: string[] = [];
    const seenDone = runEvents(nc, runId, "run.completed", {
      timeoutMs: 160_000,
      diagnose: () => clusterDiagnosis(cluster),
      onEvent: (e) => events.push(JSON.stringify(e)),
    });
    // Process lists while the run goes on: every process's argv.
    const psSnapshots: string[] = [];
    const sampler = setInterval(() => {
      void run("ps", ["-eo", "args"]).then(({ stdout }) => psSnapshots.push(stdout));
    }, 300);
    nc.publish(
      "longshot.request",
      JSON.stringify({ runId, prompt: "Add list helpers first() and last()", repo }),
    );
    const seen = await seenDone;
    clearInterval(sampler);

    const summary = seen.at(-1)!.data;
    expect(summary).toMatchObject({ status: "green", merged: 2, conflicts: 0, repo });
    const merges = seen.filter((e) => e.type === "merge.merged").map((e) => e.data.taskId);
    expect(merges.sort()).toEqual(["add-first", "add-last"]);
    const started = seen.filter((e) => e.type === "task.started").map((e) => e.data.sandbox);
    expect(new Set(started)).toEqual(new Set(["modal"]));
    // The workers and the sweeps really ran in Modal sandboxes, through the SDK's RPCs.
    expect(emulator.callCount("SandboxCreateV2")).toBeGreaterThanOrEqual(3);
    expect(emulator.callCount("TaskExecStart")).toBeGreaterThanOrEqual(3);
    expect(emulator.sandboxes().filter((s) => s.tags["longshot-owner"])).toEqual([]);
    expect(await git(repo, "rev-parse", "HEAD")).toBe(summary.head);
    const { stdout } = await run(process.execPath, ["--test"], { cwd: repo });
    expect(stdout).toMatch(/pass 3/);

    // No provider key, admin token, git token or Modal secret in argv, logs, events, or the sandbox. The
    // admin token is generated inside the cluster: read it where it legitimately lives (the dispatcher's env).
    const dispatcherEnv = await readFile(`/proc/${cluster.pids().dispatcher}/environ`, "utf8");
    const adminToken = /(?:^|\0)GATEWAY_ADMIN_TOKEN=([^\0]+)/.exec(dispatcherEnv)?.[1];
    expect(adminToken?.length).toBeGreaterThan(16);
    const secrets = [KEY, GIT_TOKEN, MODAL_SECRET, adminToken!];
    expect(psSnapshots.length).toBeGreaterThan(3);
    for (const s of secrets) {
      expect(psSnapshots.some((p) => p.includes(s))).toBe(false);
      expect(events.some((e) => e.includes(s))).toBe(false);
    }
    for (const f of await readdir(cluster.logDir)) {
      const text = await readFile(join(cluster.logDir, f), "utf8");
      for (const s of secrets) expect({ f, s, leaked: text.includes(s) }).toEqual({ f, s, leaked: false });
    }
    const sandboxEnv = await git(repo, "show", "main:sandbox-env.txt");
    expect(sandboxEnv).toMatch(/^HOME=\/home\/sandbox$/m);
    for (const s of secrets) expect(sandboxEnv).not.toContain(s);
    expect(sandboxEnv).not.toMatch(/^(NATS_|LLM_|GATEWAY_|MODAL_|GIT_TOKEN)/m);
    expect(sandboxEnv).not.toMatch(/KEY=|TOKEN=|SECRET=/);
  });
});
