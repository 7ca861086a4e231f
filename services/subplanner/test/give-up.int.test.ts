import { join } from "node:path";
import { type Bus, connectBus } from "@longshot/bus";
import { type Handoff, Streams, Subjects, Task } from "@longshot/contracts";
import { ChatClient } from "@longshot/llm";
import { createLogger } from "@longshot/log";
import { startTestNats, type TestNats, tempDir } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRepoReader } from "../src/adapters/repo.ts";
import { createSubplanner } from "../src/subplanner.ts";

// `giveUp` on a real nats-server: the answer the subplanner's last delivery gives for a parent it could not
// even record, so the root planner is not left waiting; a real outcome already published stands.

const log = createLogger({ service: "subplanner-test", level: "silent" });
const RUN = "run-sub-gives-up";
let nats: TestNats;
let bus: Bus;
let dir: Awaited<ReturnType<typeof tempDir>>;

beforeAll(async () => {
  nats = await startTestNats();
  bus = await connectBus({ servers: nats.url, name: "subplanner-give-up-test", log });
  await bus.ensureTopology();
  dir = await tempDir("longshot-sub-give-up-");
}, 60_000);

afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  await dir?.cleanup();
});

const parent = (id: string) =>
  Task.parse({
    id,
    runId: RUN,
    description: "a parent",
    scope: ["a.ts", "b.ts"],
    acceptance: "",
    branch: `worker/${id}`,
    priority: 5,
    depth: 0,
    attempt: 1,
    repo: "/srv/none",
    baseBranch: "main",
  });

const lastOf = async <T>(stream: string, subject: string): Promise<T | undefined> => {
  const m = await bus.jsm.streams.getMessage(stream, { last_by_subj: subject }).catch(() => null);
  return m?.json<{ data: T }>().data;
};

describe("subplanner giveUp", () => {
  it("answers the parent with a failed handoff and task.finished, once", async () => {
    const sub = createSubplanner({
      bus,
      log,
      // Never called by giveUp: a client of an address nothing serves.
      llm: new ChatClient({
        endpoints: [{ name: "none", baseUrl: "http://127.0.0.1:9/v1", weight: 1 }],
        model: "m",
        timeoutMs: 1000,
        maxTokens: 100,
      }),
      repo: createRepoReader(join(dir.path, "state")),
      systemPromptPath: "/nonexistent",
      branchPrefix: "worker/",
    });
    await sub.giveUp(parent("p1"), "decomposition gave up after 5 deliveries: KV unavailable");
    const h = await lastOf<Handoff>(Streams.HANDOFFS.name, Subjects.handoff(RUN));
    expect(h).toMatchObject({ taskId: "p1", status: "failed", summary: expect.stringContaining("gave up") });
    const finished = await lastOf<{ taskId: string; status: string }>(
      Streams.EVENTS.name,
      Subjects.event(RUN, "task.finished"),
    );
    expect(finished).toMatchObject({ taskId: "p1", status: "failed" });
    const before = (await bus.jsm.streams.info(Streams.EVENTS.name)).state.messages;
    // Again (a repeat of the last delivery): the handoff is a duplicate, nothing more is published.
    await sub.giveUp(parent("p1"), "again");
    expect((await bus.jsm.streams.info(Streams.EVENTS.name)).state.messages).toBe(before);
    sub.stop();
  });
});
