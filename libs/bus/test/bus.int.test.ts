import {
  Buckets,
  Consumers,
  HandoffMessage,
  newId,
  ObjectStores,
  Streams,
  Subjects,
  type Task,
} from "@longshot/contracts";
import { createLogger } from "@longshot/log";
import { startTestNats, type TestNats } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bus, connectBus, envelopeDecoder, RetryableError } from "../src/index.ts";

const log = createLogger({ service: "test", level: "silent" });
let nats: TestNats;
let bus: Bus;

beforeAll(async () => {
  nats = await startTestNats();
  bus = await connectBus({ servers: nats.url, name: "bus-test", log });
  await bus.ensureTopology();
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

const task = (id: string): Task => ({
  id,
  runId: "run-1",
  kind: "plan",
  description: "d",
  scope: [],
  acceptance: "",
  branch: `worker/${id}`,
  priority: 5,
  depth: 0,
  attempt: 1,
  repo: "/tmp/x",
  baseBranch: "main",
});
const handoff = (id: string) => ({
  taskId: id,
  runId: "run-1",
  status: "complete" as const,
  summary: "ok",
  filesChanged: [],
  concerns: [],
  suggestions: [],
  metrics: {
    linesAdded: 0,
    linesRemoved: 0,
    filesCreated: 0,
    filesModified: 0,
    tokensUsed: 0,
    toolCallCount: 0,
    durationMs: 0,
  },
  branch: `worker/${id}`,
  task: task(id),
});

describe("bus", () => {
  it("ensureTopology is idempotent", async () => {
    await bus.ensureTopology();
    const names: string[] = [];
    for await (const s of bus.jsm.streams.list()) names.push(s.config.name);
    // Every stream and bucket the topology defines, and nothing else.
    const expected = [
      ...Object.values(Streams).map((st) => st.name),
      ...Object.values(Buckets).map((b) => `KV_${b}`),
      ...Object.values(ObjectStores).map((o) => `OBJ_${o}`),
    ];
    expect(names.sort()).toEqual(expected.sort());
    expect(names).toContain("KV_longshot-leases");
  });

  it("drops a duplicate publish with the same envelope id", async () => {
    const id = newId("dup");
    const a = await bus.publish(HandoffMessage, ["run-1"], handoff("t-dup"), { runId: "run-1", id });
    const b = await bus.publish(HandoffMessage, ["run-1"], handoff("t-dup"), { runId: "run-1", id });
    expect(b.ack.duplicate).toBe(true);
    expect(b.ack.seq).toBe(a.ack.seq);
  });

  it("acks on success, redelivers on a retryable error, terminates bad payloads with an error event", async () => {
    const seen: string[] = [];
    let failedOnce = false;
    let retried!: () => void;
    const retriedSeen = new Promise<void>((r) => {
      retried = r;
    });
    const rejected = bus.nc.subscribe(Subjects.event("run-1", "error.rejected"), { max: 1 });
    const consumption = await bus.consume(
      Consumers.merger,
      envelopeDecoder(HandoffMessage),
      async (env) => {
        if (env.data.taskId === "t-retry" && !failedOnce) {
          failedOnce = true;
          throw new RetryableError("transient", { delayMs: 100 });
        }
        seen.push(env.data.taskId);
        if (env.data.taskId === "t-retry") retried();
      },
      { concurrency: 2 },
    );
    await bus.publish(HandoffMessage, ["run-1"], handoff("t-retry"), { runId: "run-1" });
    await bus.js.publish(Subjects.handoff("run-1"), JSON.stringify({ runId: "run-1", nonsense: true }));
    for await (const m of rejected) {
      expect(m.json<{ data: { reason: string } }>().data.reason).toMatch(/bad envelope/);
    }
    await retriedSeen;
    await consumption.stop();
    expect(failedOnce).toBe(true);
    expect(seen).toContain("t-retry");
    expect(seen).toContain("t-dup");
    const info = await bus.jsm.consumers.info("HANDOFFS", "merger");
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });
});
