import { join } from "node:path";
import { connectBus, readAttempts, readTranscript } from "@longshot/bus";
import { createLogger } from "@longshot/log";
import { makeRepo, processesWith, waitFor } from "@longshot/testkit";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EmbeddedCluster } from "../src/cluster.ts";
import { runCli } from "./cli-process.ts";
import { runEvents, type SeenEvent, type SimCluster, startSimCluster } from "./fixtures.ts";

// Issue #11's stuck-worker acceptance on a real cluster: the first attempt's agent runs `sleep 3705` and shows no
// progress; the monitor (STUCK_POLICY=retry) reports it stuck, the dispatcher stops its sandbox, the planner
// retries the task and the retry lands.

const KEY = "sim-stuck-key-7c1e";
const SLEEP = "sleep 3705";
const TASK = "stuck-task";
// Long enough that no phase of a healthy attempt is silent this long on a loaded machine (sandbox start to the
// worker's first line took 2.6 s on an idle one), or the retry itself would be reported stuck.
const STUCK_AFTER_MS = 8000;
let t: SimCluster;
let cluster: EmbeddedCluster;
let nc: NatsConnection;
let repo: string;

beforeAll(async () => {
  const handoff = {
    status: "complete",
    summary: "wrote stuck.txt",
    filesChanged: ["stuck.txt"],
    concerns: [],
    suggestions: [],
  };
  const script = {
    model: "sim-stuck",
    conversations: [
      {
        name: "planner",
        match: { system: "You are the root planner" },
        turns: [
          {
            content: JSON.stringify({
              tasks: [
                { id: TASK, description: "Write stuck.txt", scope: ["stuck.txt"], acceptance: "exists" },
              ],
            }),
          },
          { content: JSON.stringify({ tasks: [] }) },
        ],
      },
      // The retry's prompt carries the first attempt's outcome (services/worker/src/domain/prompt.ts), so it is
      // told apart from the first attempt by that section; tried first, conversations match in order.
      {
        name: `worker ${TASK} (attempt 2)`,
        match: {
          system: "You are a worker",
          user: `/^## Task: ${TASK}\\n[\\s\\S]*## Context from earlier attempts\\n/`,
        },
        after: "error",
        turns: [
          { toolCalls: [{ name: "write", arguments: { path: "stuck.txt", content: "unstuck\n" } }] },
          { content: `Done.\n\`\`\`json\n${JSON.stringify(handoff)}\n\`\`\`` },
        ],
      },
      {
        name: `worker ${TASK} (attempt 1)`,
        match: { system: "You are a worker", user: `## Task: ${TASK}\n` },
        turns: [{ toolCalls: [{ name: "bash", arguments: { command: SLEEP } }] }, { content: "never" }],
      },
    ],
  };
  t = await startSimCluster({
    prefix: "longshot-stuck-",
    key: KEY,
    script,
    env: { MAX_WORKERS: "2", STUCK_AFTER_MS: String(STUCK_AFTER_MS), STUCK_POLICY: "retry" },
  });
  ({ cluster, nc } = t);
  repo = join(t.dir.path, "target");
  await makeRepo(repo, { "README.md": "# target\n" });
}, 60_000);

afterAll(() => t?.stop());

describe("a stuck worker", () => {
  it("is reported stuck, its sandbox is stopped, and the task is retried and lands", async () => {
    const runId = "run-stuck-1";
    let sleptAt = 0;
    let sleeping = false;
    const done = runEvents(nc, runId, "run.completed", { timeoutMs: 160_000, diagnose: t.diagnose });
    nc.publish("longshot.request", JSON.stringify({ runId, prompt: "write stuck.txt", repo }));
    // The first attempt's agent is asleep in its sandbox.
    await waitFor(
      async () => {
        sleeping = (await processesWith(SLEEP)).length > 0;
        if (sleeping && sleptAt === 0) sleptAt = Date.now();
        return sleeping;
      },
      60_000,
      100,
    );
    // Stopped for the retry: no `sleep 3705` left once the monitor reported it.
    await waitFor(async () => (await processesWith(SLEEP)).length === 0, 60_000, 100);
    const stoppedAfterMs = Date.now() - sleptAt;
    const seen = await done;

    const of = (type: string, attempt?: number) =>
      seen.filter((e) => e.type === type && (attempt === undefined || e.data.attempt === attempt));
    const stuck = of("task.stuck", 1);
    expect(stuck.length, "task.stuck reports of attempt 1").toBeGreaterThanOrEqual(1);
    expect(stuck[0]!.data).toMatchObject({ taskId: TASK, attempt: 1, action: "retry", report: 1 });
    expect(stuck[0]!.data.idleMs as number).toBeGreaterThanOrEqual(STUCK_AFTER_MS);
    // The sandbox went with the report, not with WORKER_TIMEOUT.
    expect(stoppedAfterMs).toBeLessThan(STUCK_AFTER_MS + 20_000);
    // Attempt 1 ended failed, saying why; attempt 2 started and completed.
    const finished1 = of("task.finished", 1);
    expect(finished1).toHaveLength(1);
    expect(finished1[0]!.data.status).toBe("failed");
    expect(finished1[0]!.data.summary).toMatch(
      /^sandbox aborted by the dispatcher: stuck: no progress for \d+ s/,
    );
    expect(of("task.started", 2)).toHaveLength(1);
    expect(of("task.finished", 2)[0]?.data.status).toBe("complete");
    // No report of the retry: it made progress.
    expect(of("task.stuck", 2)).toHaveLength(0);
    const merged = of("merge.merged");
    expect(merged.map((e: SeenEvent) => [e.data.taskId, e.data.attempt])).toEqual([[TASK, 2]]);
    const completed = seen.at(-1)!;
    expect(completed.type).toBe("run.completed");
    expect(completed.data).toMatchObject({ status: "green", merged: 1 });

    // The attempt history: both attempts, each with its compact transcript, in NATS.
    const bus = await connectBus({
      servers: cluster.natsUrl,
      name: "stuck-test",
      log: createLogger({ service: "test", level: "silent" }),
      ...(cluster.client.user ? { user: cluster.client.user, pass: cluster.client.pass ?? "" } : {}),
    });
    try {
      const [a1, a2, ...more] = await readAttempts(bus, runId);
      expect(more).toEqual([]);
      expect(a1).toMatchObject({
        taskId: TASK,
        attempt: 1,
        model: t.sim.model,
        harness: "pi",
        sandbox: "local",
      });
      expect(a1!.handoff).toMatchObject({ status: "failed", summary: finished1[0]!.data.summary });
      expect(await readTranscript(bus, a1!.transcript!)).toContain(`tool bash: ${SLEEP}`);
      expect(a2).toMatchObject({ attempt: 2, timedOut: false, handoff: { status: "complete" } });
      expect(a2!.handoff.metrics).toMatchObject({ toolCallCount: 1, filesCreated: 1, linesAdded: 1 });
      expect(a2!.handoff.head).toMatch(/^[0-9a-f]{40}$/);
      expect(await readTranscript(bus, a2!.transcript!)).toContain("tool write: stuck.txt");
    } finally {
      await bus.close();
    }
    // ... and the CLI reads it from NATS alone, as the submitter user (any machine that reaches the cluster).
    const env = {
      NATS_URL: cluster.natsUrl,
      NATS_USER: cluster.submitter!.user,
      NATS_PASSWORD: cluster.submitter!.pass,
      LONGSHOT_STATE_DIR: join(t.dir.path, "elsewhere"),
    };
    const table = await runCli(["history", runId], { cwd: t.dir.path, env });
    expect(table.code, table.stderr).toBe(0);
    const rows = table.stdout.trim().split("\n");
    expect(rows[0]).toMatch(
      /^TASK\s+ATTEMPT\s+STATUS\s+MODEL\s+HARNESS\s+TOOLS\s+DIFF\s+TOKENS\s+TIME\s+MERGE QUEUE$/,
    );
    expect(rows[1]).toMatch(new RegExp(`^${TASK}\\s+1\\s+failed\\s+${t.sim.model}\\s+pi\\s+1\\s+.*skipped`));
    expect(rows[2]).toMatch(
      new RegExp(
        `^${TASK}\\s+2\\s+complete\\s+${t.sim.model}\\s+pi\\s+1\\s+\\+1 -0 1f\\s+.*merged at [0-9a-f]{12}`,
      ),
    );
    const logs = await runCli(["logs", runId, "--task", TASK], { cwd: t.dir.path, env });
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/task\.stuck/);
    expect(logs.stdout).toContain(`${TASK} attempt 1: failed`);
    expect(logs.stdout).toContain(`tool bash: ${SLEEP}`);
    expect(logs.stdout).toContain(`${TASK} attempt 2: complete`);
    expect(logs.stdout).toMatch(/merge queue merged at [0-9a-f]{12}/);
  });
});
