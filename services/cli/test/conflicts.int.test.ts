import { rmSync, writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { git, makeRepo, tempDir } from "@longshot/testkit";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmbeddedCluster } from "../src/cluster.ts";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { clusterDiagnosis, runEvents } from "./fixtures.ts";

// No lost work in a conflict storm, on a real cluster: three tasks add a line at the same spot of one file.
// Under `advisory`, t1 lands, t2 conflicts, and while t2's conflict-fix task works, t3 — planned later — lands
// on the same spot: the conflict-fix branch conflicts again and its successor must carry t2's work to main.
// Under `exclusive`, the same tasks must also all land. Either way: green, every line on main.
//
// The storm's order is forced, not timed: model replies wait for gate files (sim-llm's `waitForFile`) that
// the test creates when it sees the events they wait for.

const KEY = "sim-conflicts-key-a1";
const TASKS = ["t1", "t2", "t3"] as const;

const complete = (summary: string, files: string[]) =>
  `Done.\n\`\`\`json\n${JSON.stringify({ status: "complete", summary, filesChanged: files, concerns: [], suggestions: [] })}\n\`\`\``;

/** A conflict-fix agent: keeps both sides of every conflict (drops the markers) until the rebase is done. */
const RESOLVE = [
  "while [ -d .git/rebase-merge ] || [ -d .git/rebase-apply ]; do",
  "  for f in $(git diff --name-only --diff-filter=U); do sed -i '/^<<<<<<< /d;/^=======$/d;/^>>>>>>> /d' \"$f\"; done;",
  "  git add -A; GIT_EDITOR=true git rebase --continue || true;",
  "done; git log --oneline -3",
].join("\n");

/** The gates of the storm's order, by the event that opens each. */
const GATES = {
  /** t2 answers once t1 landed, so t2's branch (from the old main) conflicts. */
  t1Landed: "t1-landed",
  /** The planner plans t3 once t2's conflict-fix task started (from a main without t3). */
  t2cfStarted: "t2-cf-started",
  /** t2's conflict-fix resolves once t3 landed on the same spot, so its branch conflicts again. */
  t3Landed: "t3-landed",
} as const;

function script(gates: string) {
  const gate = (name: string) => join(gates, name);
  const adder = (id: string) => ({
    name: id,
    match: { system: "You are a worker", user: `## Task: ${id}\n` },
    turns: [
      {
        ...(id === "t2" ? { waitForFile: gate(GATES.t1Landed) } : {}),
        toolCalls: [
          {
            name: "edit",
            arguments: {
              path: "src/registry.ts",
              edits: [{ oldText: "// end", newText: `export const ${id} = "${id}";\n// end` }],
            },
          },
        ],
      },
      { content: complete(`added ${id}`, ["src/registry.ts"]) },
    ],
  });
  const resolver = (name: string, user: string, waitForFile?: string) => ({
    name,
    match: { system: "You are a worker", user },
    turns: [
      {
        toolCalls: [{ name: "bash", arguments: { command: RESOLVE } }],
        ...(waitForFile ? { waitForFile } : {}),
      },
      { content: complete("resolved keeping both sides", ["src/registry.ts"]) },
    ],
  });
  return {
    model: "sim-conflicts",
    conversations: [
      {
        name: "planner",
        match: { system: "You are the root planner" },
        turns: [
          {
            content: JSON.stringify({
              tasks: ["t1", "t2"].map((id) => ({
                id,
                description: `Register ${id}`,
                scope: ["src/registry.ts"],
              })),
            }),
          },
          // Planned after t1 and t2 handed off (REPLAN_AFTER_HANDOFFS=2), once t2's conflict-fix task started:
          // t3 starts from a main with t1 and lands on the same spot while the conflict-fix task is at work.
          {
            waitForFile: gate(GATES.t2cfStarted),
            content: JSON.stringify({
              tasks: [{ id: "t3", description: "Register t3", scope: ["src/registry.ts"] }],
            }),
          },
          { content: JSON.stringify({ tasks: [] }) },
        ],
      },
      // t2's first resolution waits for t3 to land on the same spot.
      resolver("t2's first resolution", "## Task: t2-cf\n", gate(GATES.t3Landed)),
      resolver("other resolutions", "/## Task: [a-z0-9-]+-cf\\d*\\n/"),
      ...TASKS.map(adder),
    ],
  };
}

let dir: Awaited<ReturnType<typeof tempDir>>;
let gates: string;
let sim: SimLlmProcess;

beforeAll(async () => {
  dir = await tempDir("longshot-conflicts-");
  gates = join(dir.path, "gates");
  await mkdir(gates);
  const scriptPath = join(dir.path, "script.json");
  await writeFile(scriptPath, JSON.stringify(script(gates)));
  sim = await startSimLlmProcess(scriptPath, KEY);
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  await dir?.cleanup();
});

describe.each(["advisory", "exclusive"] as const)("a conflict storm under SCOPE_POLICY=%s", (policy) => {
  it("ends green with every task's work on main", async () => {
    const repo = join(dir.path, `target-${policy}`);
    await makeRepo(repo, {
      "package.json": JSON.stringify({ name: "reg", type: "module", scripts: { test: "node --test" } }),
      "src/registry.ts": "// entries\n// end\n",
      "test/registry.test.ts":
        'import { test } from "node:test";\nimport * as r from "../src/registry.ts";\ntest("loads", () => void r);\n',
    });
    const cluster = await startEmbeddedCluster({
      stateDir: join(dir.path, `state-${policy}`),
      env: {
        LLM_BASE_URL: sim.url,
        LLM_API_KEY: KEY,
        LLM_MODEL: sim.model,
        MAX_WORKERS: "2",
        REPLAN_AFTER_HANDOFFS: "2",
        SCOPE_POLICY: policy,
        LOG_LEVEL: "info",
      },
    });
    const nc = await connect(cluster.client);
    try {
      const runId = `run-conflicts-${policy}`;
      const open = (name: string) => writeFileSync(join(gates, name), "");
      for (const name of Object.values(GATES)) rmSync(join(gates, name), { force: true });
      // Under exclusive no task waits on another's model reply: t2 starts after t1 landed, and no conflict
      // (so no conflict-fix task) is expected.
      if (policy === "exclusive") for (const name of Object.values(GATES)) open(name);
      const seenDone = runEvents(nc, runId, "run.completed", {
        timeoutMs: 160_000,
        diagnose: () => clusterDiagnosis(cluster),
        onEvent: (e) => {
          if (e.type === "merge.merged" && e.data.taskId === "t1") open(GATES.t1Landed);
          if (e.type === "task.started" && e.data.taskId === "t2-cf") open(GATES.t2cfStarted);
          if (e.type === "merge.merged" && e.data.taskId === "t3") open(GATES.t3Landed);
        },
      });
      nc.publish("longshot.request", JSON.stringify({ runId, prompt: "register three entries", repo }));
      const seen = await seenDone;
      const summary = seen.at(-1)!.data;
      expect(summary).toMatchObject({ status: "green" });
      expect(summary.unmerged).toBeUndefined();
      const registry = await git(repo, "show", "main:src/registry.ts");
      for (const id of TASKS) expect(registry).toContain(`export const ${id} = "${id}";`);
      expect(registry).not.toMatch(/^(<<<<<<<|=======|>>>>>>>)/m);
      if (policy === "exclusive") {
        // Scope leases last until a branch lands: each task started from a main that had the others' lines.
        expect(seen.filter((e) => e.type === "merge.conflict")).toEqual([]);
      }
      if (policy === "advisory") {
        // The storm happened: t2's first resolution conflicted again, and its successor landed t2's work.
        const conflicted = seen.filter((e) => e.type === "merge.conflict").map((e) => e.data.taskId);
        expect(conflicted).toEqual(["t2", "t2-cf"]);
        const merged = seen.filter((e) => e.type === "merge.merged").map((e) => e.data.taskId);
        expect(merged).toContain("t2-cf2");
      }
    } finally {
      await nc.drain();
      await cluster.stop();
    }
  });
});
