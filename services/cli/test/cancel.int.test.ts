import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { makeRepo, processesWith, waitFor } from "@longshot/testkit";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EmbeddedCluster } from "../src/cluster.ts";
import { runEvents, type SimCluster, startSimCluster } from "./fixtures.ts";

// `longshot.cancel` on a real cluster: a run whose workers sleep is cancelled while its sandboxes run.

const KEY = "sim-cancel-key-4b2f";
let t: SimCluster;
let cluster: EmbeddedCluster;
let nc: NatsConnection;
let repo: string;

beforeAll(async () => {
  const sleeper = (id: string) => ({
    name: id,
    match: { system: "You are a worker", user: `## Task: ${id}\n` },
    turns: [{ toolCalls: [{ name: "bash", arguments: { command: "sleep 3700" } }] }, { content: "never" }],
  });
  const script = {
    model: "sim-cancel",
    conversations: [
      {
        name: "planner",
        match: { system: "You are the root planner" },
        turns: [
          {
            content: JSON.stringify({
              tasks: ["slow-a", "slow-b", "slow-c"].map((id) => ({
                id,
                description: id,
                scope: [`${id}.txt`],
              })),
            }),
          },
          { content: JSON.stringify({ tasks: [] }) },
        ],
      },
      sleeper("slow-a"),
      sleeper("slow-b"),
      sleeper("slow-c"),
    ],
  };
  // Two slots for three tasks: one task of the run is still waiting when it is cancelled.
  t = await startSimCluster({ prefix: "longshot-cancel-", key: KEY, script, env: { MAX_WORKERS: "2" } });
  ({ cluster, nc } = t);
  repo = join(t.dir.path, "target");
  await makeRepo(repo, { "README.md": "# target\n" });
}, 60_000);

afterAll(() => t?.stop());

describe("cancelling a run", () => {
  it("stops planning and dispatch, terminates its sandboxes, and ends the run cancelled with the reason", async () => {
    const runId = "run-cancel-1";
    const seenDone = runEvents(nc, runId, "run.completed", { timeoutMs: 160_000, diagnose: t.diagnose });
    // maxWorkers 3 lets the planner publish all three tasks; the dispatcher has two slots.
    nc.publish("longshot.request", JSON.stringify({ runId, prompt: "sleep", repo, maxWorkers: 3 }));
    // Both slots busy with sleeping agents.
    await waitFor(async () => (await processesWith("sleep 3700")).length >= 2, 60_000, 100);
    nc.publish("longshot.cancel", JSON.stringify({ runId, reason: "wrong request", by: "test" }));
    const seen = await seenDone;

    const completed = seen.at(-1)!;
    expect(completed.type).toBe("run.completed");
    expect(completed.data).toMatchObject({ status: "cancelled", reason: "wrong request" });
    expect(seen.find((e) => e.type === "run.cancelled")?.data).toEqual({
      reason: "wrong request",
      by: "test",
    });
    // The sandboxes are gone, and the waiting task never starts.
    await waitFor(async () => (await processesWith("sleep 3700")).length === 0, 20_000, 100);
    // The third task got a slot once the others were stopped, and was not started.
    const dispatcherLog = () => readFile(join(cluster.logDir, "dispatcher.log"), "utf8");
    await waitFor(
      async () => (await dispatcherLog()).includes('"msg":"run cancelled: task not started"'),
      20_000,
      100,
    );
    expect(seen.filter((e) => e.type === "task.started").length).toBe(2);
    const finished = seen.filter((e) => e.type === "task.finished");
    expect(finished.length).toBeLessThanOrEqual(2);

    // A second cancel, and a cancel of an unknown run, change nothing.
    nc.publish("longshot.cancel", JSON.stringify({ runId, reason: "again" }));
    nc.publish("longshot.cancel", JSON.stringify({ runId: "run-nobody", reason: "x" }));
    await nc.flush();
    expect(cluster.pids().planner).toBeGreaterThan(0);
  });
});
