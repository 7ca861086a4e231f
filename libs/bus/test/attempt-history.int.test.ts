import {
  type AttemptRecord,
  Buckets,
  type Handoff,
  ObjectStores,
  STORE_LIMITS,
  type Task,
} from "@longshot/contracts";
import { createLogger } from "@longshot/log";
import { startTestNats, type TestNats } from "@longshot/testkit";
import { nanos } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bus, connectBus, readAttempts, readTranscript, writeAttempt } from "../src/index.ts";

// The attempt history on a real nats-server: records in KV, compact transcripts in the object store.

const log = createLogger({ service: "test", level: "silent" });
let nats: TestNats;
let bus: Bus;

beforeAll(async () => {
  nats = await startTestNats();
  bus = await connectBus({ servers: nats.url, name: "history-test", log });
  await bus.ensureTopology();
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

const task = (id: string, attempt: number, runId = "run-h1"): Task => ({
  id,
  runId,
  kind: attempt > 1 ? "retry" : "plan",
  description: `do ${id}`,
  scope: [`${id}.txt`],
  acceptance: "",
  branch: `worker/${id}`,
  priority: 5,
  depth: 0,
  attempt,
  repo: "/tmp/repo",
  baseBranch: "main",
});

const record = (
  id: string,
  attempt: number,
  startedAt: string,
  runId = "run-h1",
): Omit<AttemptRecord, "transcript"> => {
  const t = task(id, attempt, runId);
  const handoff: Handoff = {
    taskId: id,
    runId,
    status: attempt === 1 ? "failed" : "complete",
    summary: attempt === 1 ? "sandbox aborted" : `wrote ${id}.txt`,
    filesChanged: attempt === 1 ? [] : [`${id}.txt`],
    concerns: [],
    suggestions: [],
    metrics: {
      linesAdded: attempt === 1 ? 0 : 3,
      linesRemoved: 0,
      filesCreated: attempt === 1 ? 0 : 1,
      filesModified: 0,
      tokensUsed: 1200,
      toolCallCount: attempt + 1,
      durationMs: 4000,
    },
    branch: t.branch,
    ...(attempt === 1 ? {} : { head: "a".repeat(40) }),
    task: t,
  };
  return {
    runId,
    taskId: id,
    attempt,
    model: attempt === 1 ? "glm-5" : "glm-4.5-air",
    harness: "pi",
    sandbox: "local",
    startedAt,
    finishedAt: startedAt,
    timedOut: false,
    handoff,
  };
};

describe("attempt history", () => {
  it("creates its bucket and object store bounded by STORE_LIMITS (max age, max bytes)", async () => {
    const kv = await bus.jsm.streams.info(`KV_${Buckets.attempts}`);
    const limits = STORE_LIMITS[Buckets.attempts]!;
    expect(kv.config.max_age).toBe(nanos(limits.maxAgeMs));
    expect(kv.config.max_bytes).toBe(limits.maxBytes);
    const obj = await bus.jsm.streams.info(`OBJ_${ObjectStores.transcripts}`);
    const objLimits = STORE_LIMITS[ObjectStores.transcripts]!;
    expect(obj.config.max_age).toBe(nanos(objLimits.maxAgeMs));
    expect(obj.config.max_bytes).toBe(objLimits.maxBytes);
  });

  it("stores a record with its transcript and reads every attempt of a run back, by task then attempt", async () => {
    const text = "2026-01-01T00:00:00.000Z worker started\n2026-01-01T00:00:01.000Z tool bash: sleep 3705\n";
    const first = await writeAttempt(bus, record("t-b", 1, "2026-01-01T00:00:00.000Z"), {
      text,
      lines: 2,
      omittedLines: 0,
    });
    expect(first.transcript).toEqual({
      object: "run-h1.t-b.1",
      lines: 2,
      omittedLines: 0,
      bytes: Buffer.byteLength(text),
    });
    await writeAttempt(bus, record("t-b", 2, "2026-01-01T00:00:09.000Z"), {
      text: "x\n",
      lines: 1,
      omittedLines: 0,
    });
    // A task started later, and an attempt with no transcript lines at all.
    await writeAttempt(bus, record("t-a", 1, "2026-01-01T00:00:05.000Z"), {
      text: "",
      lines: 0,
      omittedLines: 0,
    });
    // Another run's attempt is not listed.
    await writeAttempt(bus, record("t-b", 1, "2026-01-01T00:00:00.000Z", "run-h2"), {
      text: "y\n",
      lines: 1,
      omittedLines: 0,
    });

    const all = await readAttempts(bus, "run-h1");
    expect(all.map((r) => `${r.taskId}#${r.attempt}`)).toEqual(["t-b#1", "t-b#2", "t-a#1"]);
    expect(all[2]!.transcript).toBeUndefined();
    expect(all[1]!.handoff.metrics.toolCallCount).toBe(3);
    expect((await readAttempts(bus, "run-h1", "t-b")).map((r) => r.attempt)).toEqual([1, 2]);
    expect(await readAttempts(bus, "run-none")).toEqual([]);
    expect(await readTranscript(bus, all[0]!.transcript!)).toBe(text);
  });

  it("replaces an attempt written again (a redelivered task's rerun)", async () => {
    await writeAttempt(bus, record("t-c", 1, "2026-01-01T00:00:00.000Z"), {
      text: "old\n",
      lines: 1,
      omittedLines: 0,
    });
    const again = await writeAttempt(bus, record("t-c", 1, "2026-01-01T00:01:00.000Z"), {
      text: "new\n",
      lines: 1,
      omittedLines: 0,
    });
    const [stored] = await readAttempts(bus, "run-h1", "t-c");
    expect(stored).toEqual(again);
    expect(await readTranscript(bus, stored!.transcript!)).toBe("new\n");
  });
});
