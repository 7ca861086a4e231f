import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Bus, connectBus } from "@longshot/bus";
import { Buckets, emptyMetrics, type Handoff } from "@longshot/contracts";
import { createRepoReader } from "@longshot/git";
import { ChatClient } from "@longshot/llm";
import { createLogger } from "@longshot/log";
import { makeRepo, startTestNats, type TestNats, tempDir } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunState } from "../src/domain/run.ts";
import { createPlanner } from "../src/planner.ts";

const root = new URL("../../../", import.meta.url).pathname;
const log = createLogger({ service: "test", level: "silent" });
let nats: TestNats;
let bus: Bus;
let dir: Awaited<ReturnType<typeof tempDir>>;
let stopSim: () => void;
let simUrl: string;

beforeAll(async () => {
  nats = await startTestNats();
  bus = await connectBus({ servers: nats.url, name: "cas-test", log });
  await bus.ensureTopology();
  dir = await tempDir("longshot-cas-");
  const script = {
    model: "sim-cas",
    conversations: [
      {
        name: "planner",
        match: { system: "You are the root planner" },
        turns: [
          {
            content: JSON.stringify({
              scratchpad: "",
              tasks: [{ id: "t1", description: "do it", scope: ["a.ts"] }],
            }),
          },
          { content: '{"tasks":[]}' },
        ],
      },
    ],
  };
  await writeFile(join(dir.path, "script.json"), JSON.stringify(script));
  ({ url: simUrl, stop: stopSim } = await startSim());
}, 60_000);

/** sim-llm on the test's script (a child process); `extra` adds CLI flags such as `--api-key`. */
async function startSim(...extra: string[]): Promise<{ url: string; stop: () => void }> {
  const sim = spawn(
    process.execPath,
    [
      join(root, "services/sim-llm/src/main.ts"),
      "--script",
      join(dir.path, "script.json"),
      "--port",
      "0",
      ...extra,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const url = await new Promise<string>((resolve) => {
    sim.stdout.on("data", (d: Buffer) => {
      const m = /listening on (http\S+)/.exec(d.toString());
      if (m) resolve(m[1]!);
    });
  });
  return { url, stop: () => sim.kill("SIGTERM") };
}

/** A planner on the test's bus calling the model at `url` (with `apiKey`, when given). */
function plannerFor(url: string, apiKey?: string) {
  return createPlanner({
    bus,
    log,
    llm: new ChatClient({
      endpoints: [{ name: "sim", baseUrl: url, apiKey, weight: 1 }],
      model: "sim-cas",
      timeoutMs: 10_000,
      maxTokens: 1000,
    }),
    repo: createRepoReader(join(dir.path, "state")),
    systemPromptPath: join(root, "prompts/root-planner.md"),
    policy: {
      branchPrefix: "worker/",
      maxConflictFixes: 30,
      finalizationMaxAttempts: 3,
      finalizationTimeoutMs: 60_000,
    },
    replanAfter: 3,
    maxIterations: 10,
  });
}

afterAll(async () => {
  stopSim?.();
  await bus?.close();
  await nats?.stop();
  await dir?.cleanup();
});

describe("planner and a model endpoint that refuses it", () => {
  it("ends the run red at once with the HTTP status and what to check, instead of retrying", async () => {
    const repo = join(dir.path, "target-401");
    await makeRepo(repo, { "SPEC.md": "# spec\n" });
    const keyed = await startSim("--api-key", "the-right-key");
    try {
      const planner = plannerFor(keyed.url, "a-wrong-key");
      const completed = bus.nc.subscribe("longshot.event.run-401.run.completed", { max: 1 });
      const t0 = Date.now();
      await planner.start({ runId: "run-401", prompt: "x", repo, baseBranch: "main", maxWorkers: 2 });
      for await (const m of completed) {
        const summary = m.json<{ data: { status: string; reason?: string } }>().data;
        expect(summary.status).toBe("red");
        expect(summary.reason).toContain("HTTP 401");
        expect(summary.reason).toContain("LLM_API_KEY");
      }
      expect(Date.now() - t0).toBeLessThan(10_000); // no backoff ladder (10 attempts, up to 30 s apart)
      planner.stop();
    } finally {
      keyed.stop();
    }
  });
});

describe("planner run state in KV", () => {
  it("given another writer changed the run state, when the planner records a handoff, then it reloads and keeps both changes", async () => {
    const repo = join(dir.path, "target");
    await makeRepo(repo, { "SPEC.md": "# spec\n", "a.ts": "export {};\n" });
    const planner = plannerFor(simUrl);
    const planned = bus.nc.subscribe("longshot.event.run-cas.task.planned", { max: 1 });
    await planner.start({ runId: "run-cas", prompt: "x", repo, baseBranch: "main", maxWorkers: 2 });
    for await (const m of planned)
      expect(m.json<{ data: { task: { id: string } } }>().data.task.id).toBe("t1");

    // Another writer bumps the stored state (e.g. a second planner instance). The planner may still be
    // writing its own changes, so the external writer retries its read-modify-write.
    const kv = await bus.kv(Buckets.runs);
    let stored!: RunState;
    for (let written = false; !written; ) {
      const entry = (await kv.get("run-cas"))!;
      stored = entry.json<RunState>();
      written = await kv
        .update("run-cas", JSON.stringify({ ...stored, tokens: stored.tokens + 1_000_000 }), entry.revision)
        .then(
          () => true,
          () => false,
        );
    }

    const task = stored.tasks.t1!.task;
    const handoff: Handoff = {
      taskId: "t1",
      runId: "run-cas",
      status: "complete",
      summary: "done",
      filesChanged: ["a.ts"],
      concerns: [],
      suggestions: [],
      metrics: { ...emptyMetrics(), tokensUsed: 5 },
      branch: task.branch,
      head: "abc",
      task,
    };
    await planner.onHandoff(handoff);
    const after = (await kv.get("run-cas"))!.json<RunState>();
    expect(after.tasks.t1!.handoff?.status).toBe("complete");
    expect(after.tokens).toBe(stored.tokens + 1_000_000 + 5);
    planner.stop();
  });
});
