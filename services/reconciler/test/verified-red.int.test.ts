import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Bus, connectBus, startNatsServer } from "@longshot/bus";
import { createMirrors } from "@longshot/git";
import { createLogger } from "@longshot/log";
import {
  type CheckRunSpec,
  createLocalBackend,
  createSandboxProvider,
  type SandboxProvider,
} from "@longshot/sandbox";
import { makeRepo } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHeadReader, createSweeper } from "../src/adapters/sweep.ts";
import { createReconciler } from "../src/reconciler.ts";

// The reconciler as the merge queue's safety net (#12): main red at a commit the queue verified is re-checked
// once, and `health.verified-red` says whether a check flaked or the queue let a failing tree through. Real
// nats-server, real git, checks in real bubblewrap sandboxes.

const log = createLogger({ service: "verified-red-test", level: process.env.LOG_LEVEL ?? "silent" });
const PACKAGE_JSON = JSON.stringify({
  name: "t",
  private: true,
  type: "module",
  scripts: { test: "node --test" },
});
const testFile = (expected: number) =>
  `import assert from "node:assert/strict";\nimport { test } from "node:test";\ntest("adds", () => assert.equal(1 + 1, ${expected}, "ARITHMETIC_IS_BROKEN"));\n`;

type Event = { type: string; data: Record<string, unknown> };

/**
 * A provider whose test check flakes: its first run fails (`exit 1`, "FLAKE") whatever the code, every later
 * run is the real check. Everything else is the real provider; each run is a real sandbox.
 */
function flakyOnce(real: SandboxProvider): SandboxProvider & { runs: number } {
  const p = {
    ...real,
    runs: 0,
    runChecks(spec: CheckRunSpec) {
      p.runs++;
      if (p.runs > 1) return real.runChecks(spec);
      return real.runChecks({
        ...spec,
        checks: spec.checks.map((c) => (c.name === "test" ? { ...c, command: "echo FLAKE; exit 1" } : c)),
      } as CheckRunSpec);
    },
  };
  return p;
}

describe("reconciler: red at a commit the merge queue verified", () => {
  let root: string;
  let nats: Awaited<ReturnType<typeof startNatsServer>>;
  let bus: Bus;
  let provider: SandboxProvider;
  let n = 0;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "longshot-verified-red-"));
    await chmod(root, 0o711);
    await mkdir(join(root, "sandboxes"), { mode: 0o711 });
    nats = await startNatsServer();
    bus = await connectBus({ servers: nats.url, name: "verified-red-test", log });
    await bus.ensureTopology();
    provider = createSandboxProvider({
      backend: createLocalBackend({ isolation: "bwrap", tmpRoot: join(root, "sandboxes"), log }),
      mirrors: createMirrors(join(root, "mirrors")),
      log,
      limits: { memoryMb: 1024, pidsMax: 256 },
    });
  });

  afterAll(async () => {
    await bus?.close();
    await nats?.stop();
    await rm(root, { recursive: true, force: true });
  });

  /** Sweeps `repo` for a new run through a reconciler over `p`, after noting `verified` shas; returns the run's events. */
  async function sweepRun(p: SandboxProvider, repo: string, verified: string[]): Promise<Event[]> {
    const runId = `run-vr-${++n}`;
    const reconciler = createReconciler({
      bus,
      log,
      sweep: createSweeper({ provider: p, overrides: {}, timeoutMs: 60_000, installNetwork: false }),
      headOf: createHeadReader(p),
      timer: { redIntervalMs: 3_600_000, greenIntervalMs: 3_600_000, greenStreak: 3 },
      refileAfterMs: 0,
    });
    const events: Event[] = [];
    const sub = bus.nc.subscribe(`longshot.event.${runId}.>`, {
      callback: (_err, msg) => {
        events.push(msg.json<Event>());
      },
    });
    try {
      for (const sha of verified) reconciler.noteVerified(runId, sha);
      await reconciler.request(runId, repo, "main", `req-${runId}`);
      await bus.nc.flush();
      return events;
    } finally {
      sub.unsubscribe();
      reconciler.stop();
    }
  }

  const target = async (expected: number) => {
    const path = join(root, `repo-${++n}`);
    return {
      path,
      head: await makeRepo(path, { "package.json": PACKAGE_JSON, "test/a.test.ts": testFile(expected) }),
    };
  };

  it("given a flaky check at a verified commit, then the re-run passes: 'flaky', and the green result stands", async () => {
    const { path, head } = await target(2);
    const flaky = flakyOnce(provider);
    const events = await sweepRun(flaky, path, [head]);
    expect(flaky.runs).toBe(2);
    const verdict = events.find((e) => e.type === "health.verified-red");
    expect(verdict?.data).toMatchObject({ sha: head, cause: "flaky", failing: ["test"], rerunFailing: [] });
    expect(JSON.stringify(verdict?.data.checks)).toContain("FLAKE");
    expect(events.find((e) => e.type === "health.swept")?.data).toMatchObject({ sha: head, green: true });
  });

  it("given a verified commit that really fails, then the re-run fails too: 'queue-defect', and main is reported red", async () => {
    const { path, head } = await target(3);
    const events = await sweepRun(provider, path, [head]);
    const verdict = events.find((e) => e.type === "health.verified-red");
    expect(verdict?.data).toMatchObject({
      sha: head,
      cause: "queue-defect",
      failing: ["test"],
      rerunFailing: ["test"],
    });
    expect(JSON.stringify(verdict?.data.checks)).toContain("ARITHMETIC_IS_BROKEN");
    expect(events.find((e) => e.type === "health.swept")?.data).toMatchObject({ sha: head, green: false });
  });

  it("given a landing the queue verified, then it is not swept at once: the run's timer sweeps it", async () => {
    const { path, head } = await target(2);
    const counted = flakyOnce(provider);
    const runId = `run-vr-${++n}`;
    const reconciler = createReconciler({
      bus,
      log,
      sweep: createSweeper({ provider: counted, overrides: {}, timeoutMs: 60_000, installNetwork: false }),
      headOf: createHeadReader(counted),
      timer: { redIntervalMs: 1_000, greenIntervalMs: 3_600_000, greenStreak: 3 },
      refileAfterMs: 0,
    });
    const swept = new Promise<Event>((resolve) => {
      const sub = bus.nc.subscribe(`longshot.event.${runId}.health.swept`, {
        max: 1,
        callback: (_err, msg) => resolve(msg.json<Event>()),
      });
      void sub.closed;
    });
    try {
      const landedAt = Date.now();
      reconciler.verifiedLanding(runId, path, "main", head);
      reconciler.verifiedLanding(runId, path, "main", head);
      expect(counted.runs).toBe(0);
      const event = await swept;
      expect(Date.now() - landedAt).toBeGreaterThanOrEqual(1_000);
      // The timer's sweep ran the checks once: the flaky first run made it red, and as the commit was verified,
      // the re-run told a flake, whose green result is the sweep's.
      expect(counted.runs).toBe(2);
      expect(event.data).toMatchObject({ sha: head, green: true });
    } finally {
      reconciler.stop();
    }
  });

  it("given a red commit the queue never verified, then nothing is re-run and no verdict is published", async () => {
    const { path, head } = await target(3);
    const counted = flakyOnce(provider);
    const events = await sweepRun(counted, path, []);
    expect(counted.runs).toBe(1);
    expect(events.map((e) => e.type)).not.toContain("health.verified-red");
    expect(events.find((e) => e.type === "health.swept")?.data).toMatchObject({ sha: head, green: false });
  });
});
