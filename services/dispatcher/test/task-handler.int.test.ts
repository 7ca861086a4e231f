import { createServer } from "node:net";
import { type Bus, connectBus, type HandlerContext } from "@longshot/bus";
import { envelope, type Handoff, Streams, Subjects, Task } from "@longshot/contracts";
import { createMirrors } from "@longshot/git";
import { createLogger } from "@longshot/log";
import { createLocalBackend, createSandboxProvider } from "@longshot/sandbox";
import { startTestNats, type TestNats, tempDir, waitFor } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTokenIssuer } from "../src/adapters/gateway-tokens.ts";
import { Scheduler } from "../src/domain/scheduler.ts";
import { createTaskHandler } from "../src/handlers/task.ts";

// The dispatcher's task handler on a real nats-server: when dispatch itself keeps failing (here the gateway that
// issues sandbox tokens is down), the last delivery answers with a failed handoff the planner acts on.

const log = createLogger({ service: "dispatcher-test", level: "silent" });
const RUN = "run-dispatch-gives-up";
let nats: TestNats;
let bus: Bus;
let dir: Awaited<ReturnType<typeof tempDir>>;
let deadGateway: string;

beforeAll(async () => {
  nats = await startTestNats();
  bus = await connectBus({ servers: nats.url, name: "dispatcher-handler-test", log });
  await bus.ensureTopology();
  dir = await tempDir("longshot-dispatcher-handler-");
  // A port nothing listens on: bound, then closed.
  const port = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
  deadGateway = `http://127.0.0.1:${port}`;
}, 60_000);

afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  await dir?.cleanup();
});

const ctx = (deliveryCount: number, lastDelivery: boolean): HandlerContext =>
  // The handler reads only the delivery facts and the logger; the raw message stays with the bus.
  ({ msg: undefined as never, log, deliveryCount, lastDelivery });

const task = Task.parse({
  id: "t1",
  runId: RUN,
  description: "a task whose sandbox never gets a token",
  scope: ["a.txt"],
  acceptance: "a.txt exists",
  branch: "worker/t1",
  priority: 5,
  depth: 0,
  attempt: 1,
  repo: "/srv/none",
  baseBranch: "main",
});

describe("dispatcher task handler", () => {
  it("answers a dispatch that keeps failing with a failed handoff on the last delivery, and retries before", async () => {
    const handle = createTaskHandler({
      bus,
      provider: createSandboxProvider({
        backend: createLocalBackend({ isolation: "unsafe", tmpRoot: dir.path, log }),
        mirrors: createMirrors(`${dir.path}/mirrors`),
        log,
        limits: {},
      }),
      scheduler: new Scheduler(2, "advisory"),
      llm: { baseUrl: `${deadGateway}/v1`, model: "m", maxTokens: 1000 },
      tokens: createTokenIssuer(deadGateway, "admin-token-0123456789", 0, 60_000),
      timeoutMs: 60_000,
    });
    const env = envelope("task", 1, task, { runId: RUN, taskId: task.id, id: `task-${RUN}-t1-1` });
    const lastHandoff = () =>
      bus.jsm.streams
        .getMessage(Streams.HANDOFFS.name, { last_by_subj: Subjects.handoff(RUN) })
        .then((m) => m?.json<{ data: Handoff }>().data)
        .catch(() => undefined);

    await expect(handle(env, ctx(1, false))).rejects.toThrow();
    expect(await lastHandoff()).toBeUndefined();

    await handle(env, ctx(5, true));
    const h = await waitFor(lastHandoff, 10_000, 50);
    expect(h.status).toBe("failed");
    expect(h.head).toBeUndefined();
    expect(h.summary).toMatch(/^dispatch gave up after 5 deliveries: /);
    const finished = await bus.jsm.streams.getMessage(Streams.EVENTS.name, {
      last_by_subj: Subjects.event(RUN, "task.finished"),
    });
    expect(finished?.json<{ data: { status: string } }>().data.status).toBe("failed");
  }, 60_000);
});
