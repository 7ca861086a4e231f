import { type ChildProcess, execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Bus, connectBus, type NatsServerHandle, startNatsServer } from "@longshot/bus";
import { Buckets, branchNameProblem, type EventPayload, Subjects } from "@longshot/contracts";
import { createLogger } from "@longshot/log";
import { makeRepo, type StartedNodeProcess, startNodeProcess, tempDir } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunState } from "../src/domain/run.ts";
import { REF_NAME_CASES } from "./ref-names.ts";

// Hostile and repeated `longshot.request`s against the real planner process on a real nats-server (4 MiB
// max_payload like the embedded cluster, so a 3 MB request reaches the planner at all). Each rejection
// must arrive where the sender can watch for it.

const root = new URL("../../../", import.meta.url).pathname;
const log = createLogger({ service: "test", level: "silent" });
const MiB = 1024 * 1024;
let nats: NatsServerHandle;
let bus: Bus;
let dir: Awaited<ReturnType<typeof tempDir>>;
let repo: string;
let otherRepo: string;
const children: ChildProcess[] = [];
/** The planner's log lines (pino JSON). */
const plannerLines: { level: number; msg: string }[] = [];

/** Starts `node <main>` (repo-relative) in the scratch dir; the child is stopped after all. */
async function startProcess(
  main: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  onLine?: (line: string) => void,
): Promise<StartedNodeProcess> {
  const p = await startNodeProcess(join(root, main), args, {
    cwd: dir.path,
    env,
    ready,
    ...(onLine ? { onLine } : {}),
  });
  children.push(p.child);
  return p;
}

beforeAll(async () => {
  nats = await startNatsServer({ maxPayloadBytes: 4 * MiB });
  bus = await connectBus({ servers: nats.url, name: "request-test", log });
  await bus.ensureTopology();
  dir = await tempDir("longshot-request-");
  repo = join(dir.path, "target");
  otherRepo = join(dir.path, "other");
  await makeRepo(repo, { "SPEC.md": "# spec\n" });
  await makeRepo(otherRepo, { "SPEC.md": "# other\n" });
  const script = {
    model: "sim-request",
    conversations: [
      {
        name: "planner",
        match: { system: "You are the root planner" },
        turns: [{ content: JSON.stringify({ scratchpad: "", tasks: [{ id: "t1", description: "do it" }] }) }],
      },
    ],
  };
  await writeFile(join(dir.path, "script.json"), JSON.stringify(script));
  const sim = await startProcess(
    "services/sim-llm/src/main.ts",
    ["--script", join(dir.path, "script.json"), "--port", "0"],
    { ...process.env },
    /listening on (http\S+)/,
  );
  await startProcess(
    "services/planner/src/main.ts",
    [],
    {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NATS_URL: nats.url,
      LLM_BASE_URL: sim.match[1],
      LLM_MODEL: "sim-request",
      LONGSHOT_STATE_DIR: join(dir.path, "state"),
      LOG_LEVEL: "info",
    },
    /"msg":"started"/,
    (line) => {
      try {
        plannerLines.push(JSON.parse(line));
      } catch {
        // not a log line
      }
    },
  );
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill("SIGTERM");
  await bus?.close();
  await nats?.stop();
  await dir?.cleanup();
});

type Rejected = { subject: string; correlationId: string; data: EventPayload<"run.rejected"> };

/**
 * Subscribes to every `run.rejected` BEFORE `send` publishes, then resolves with the first one on
 * `longshot.event.<runId>.run.rejected`, where `runId` may depend on what `send` returned (the stream seq).
 */
async function rejectionOf<T>(send: () => Promise<T>, runIdOf: (sent: T) => string): Promise<Rejected> {
  const sub = bus.nc.subscribe(Subjects.eventsOfType("run.rejected"));
  const sent = await send();
  const subject = Subjects.event(runIdOf(sent), "run.rejected");
  for await (const m of sub) {
    if (m.subject !== subject) continue;
    sub.unsubscribe();
    const env = m.json<{ correlationId: string; data: EventPayload<"run.rejected"> }>();
    return { subject: m.subject, correlationId: env.correlationId, data: env.data };
  }
  throw new Error(`subscription closed before a rejection on ${subject}`);
}

/** Publishes `body` on longshot.request through JetStream (optionally with a Nats-Msg-Id); returns the seq. */
async function publish(body: string, msgId?: string): Promise<number> {
  const ack = await bus.js.publish(Subjects.request, body, msgId ? { msgID: msgId } : {});
  return ack.seq;
}

/** Events of one run stored in the EVENTS stream, counted by subject. */
async function storedEvents(runId: string): Promise<Record<string, number>> {
  const info = await bus.jsm.streams.info("EVENTS", { subjects_filter: Subjects.runEvents(runId) });
  return (info.state.subjects ?? {}) as Record<string, number>;
}

describe("hostile requests: each one gets a run.rejected the sender sees, with the reason", () => {
  it("a 3 MB prompt: rejected under its runId for the request size and the prompt size", async () => {
    const body = JSON.stringify({ runId: "big-1", prompt: "p".repeat(3_000_000), repo });
    const r = await rejectionOf(
      () => publish(body),
      () => "big-1",
    );
    expect(r.data.errors).toEqual([
      {
        path: "",
        message: `request is ${Buffer.byteLength(body)} bytes; at most 1048576 bytes (1 MiB) are accepted`,
      },
      {
        path: "prompt",
        message: "prompt is 3000000 bytes; at most 262144 bytes (256 KiB, UTF-8) are accepted",
      },
    ]);
    expect(await storedEvents("big-1")).toEqual({ "longshot.event.big-1.run.rejected": 1 });
  });

  it.each([
    { baseBranch: "-x", reason: "baseBranch must not start with '-' (git check-ref-format rules)" },
    { baseBranch: "a..b", reason: "baseBranch must not contain '..' (git check-ref-format rules)" },
  ])(
    "baseBranch $baseBranch: rejected under its runId, saying which rule",
    async ({ baseBranch, reason }) => {
      const runId = `branch-${baseBranch === "-x" ? "dash" : "dots"}`;
      const r = await rejectionOf(
        () => publish(JSON.stringify({ runId, prompt: "x", repo, baseBranch })),
        () => runId,
      );
      expect(r.data.errors).toEqual([{ path: "baseBranch", message: reason }]);
    },
  );

  it("a reused runId with a different repo: rejected because the id is taken; the run keeps its repo", async () => {
    const accepted = bus.nc.subscribe(Subjects.event("reuse-1", "run.accepted"), { max: 1 });
    await publish(JSON.stringify({ runId: "reuse-1", prompt: "build it", repo }));
    for await (const m of accepted) expect(m.json<{ data: { repo: string } }>().data.repo).toBe(repo);

    const r = await rejectionOf(
      () => publish(JSON.stringify({ runId: "reuse-1", prompt: "build it", repo: otherRepo })),
      () => "reuse-1",
    );
    expect(r.data.errors).toEqual([
      { path: "runId", message: "run id reuse-1 is taken by another request (different repo)" },
    ]);
    const state = (await (await bus.kv(Buckets.runs)).get("reuse-1"))!.json<RunState>();
    expect(state.run.repo).toBe(repo);
    expect((await storedEvents("reuse-1"))["longshot.event.reuse-1.run.accepted"]).toBe(1);
  });

  it("unparseable JSON sent with `nats req`: the reply is the publish ack, and the rejection goes to request-<seq>", async () => {
    let seq = 0;
    const r = await rejectionOf(
      async () => {
        const reply = await bus.nc.request(Subjects.request, "{not json", { timeout: 5000 });
        seq = reply.json<{ stream: string; seq: number }>().seq;
        return seq;
      },
      (s) => `request-${s}`,
    );
    expect(r.data).toEqual({ errors: [{ path: "", message: "payload is not JSON" }], requestSeq: seq });
    expect(r.correlationId).toBe(`request-${seq}`);
  });

  it("an invalid runId with a Nats-Msg-Id header: rejected under the header's id, correlated by it", async () => {
    const r = await rejectionOf(
      () => publish(JSON.stringify({ runId: "not a run id!", prompt: "x", repo }), "hdr-7"),
      () => "hdr-7",
    );
    expect(r.data.errors.map((e) => e.path)).toEqual(["runId"]);
    expect(r.correlationId).toBe("hdr-7");
  });

  it("an invalid runId and no header: rejected under request-<seq>", async () => {
    const r = await rejectionOf(
      () => publish(JSON.stringify({ runId: "../../etc", prompt: "x", repo })),
      (seq) => `request-${seq}`,
    );
    expect(r.data.errors.map((e) => e.path)).toEqual(["runId"]);
  });
});

describe("the same request twice", () => {
  it("is one run: accepted again, no rejection, one run.accepted stored, planned once", async () => {
    const body = JSON.stringify({ runId: "same-1", prompt: "build it", repo, maxWorkers: 3 });
    const planned = bus.nc.subscribe(Subjects.event("same-1", "task.planned"), { max: 1 });
    const accepted = bus.nc.subscribe(Subjects.event("same-1", "run.accepted"), { max: 2 });
    const rejected = bus.nc.subscribe(Subjects.event("same-1", "run.rejected"));
    await publish(body);
    for await (const _ of planned); // the first plan went out
    await publish(body);
    const ids: string[] = [];
    for await (const m of accepted) ids.push(m.json<{ id: string }>().id);
    expect(ids).toEqual(["run-accepted-same-1", "run-accepted-same-1"]); // re-announced under the same id
    rejected.unsubscribe();
    expect(rejected.getReceived()).toBe(0);
    const stored = await storedEvents("same-1");
    expect(stored["longshot.event.same-1.run.accepted"]).toBe(1);
    expect(stored["longshot.event.same-1.task.planned"]).toBe(1);
    expect(stored["longshot.event.same-1.planner.iteration"]).toBe(1);
  });
});

describe("the planner process", () => {
  it("logged no error while handling all of the above", () => {
    expect(plannerLines.filter((l) => l.level >= 50)).toEqual([]);
    expect(plannerLines.length).toBeGreaterThan(0);
  });
});

describe("branchNameProblem against real git", () => {
  const run = promisify(execFile);
  it("agrees with `git check-ref-format --branch` on every name of the table, except where the table says", async () => {
    for (const c of REF_NAME_CASES) {
      // Outside any repository, so `@{-1}` cannot resolve to a previous branch.
      const gitOk = await run("git", ["check-ref-format", "--branch", c.name], { cwd: dir.path }).then(
        () => true,
        () => false,
      );
      expect({ name: c.name, git: gitOk }).toEqual({ name: c.name, git: c.git ?? c.ok });
      expect({ name: c.name, ok: branchNameProblem(c.name) === undefined }).toEqual({
        name: c.name,
        ok: c.ok,
      });
    }
  });
});
