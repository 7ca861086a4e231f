import { join } from "node:path";
import { Buckets, ObjectStores, Streams } from "@longshot/contracts";
import { createLogger } from "@longshot/log";
import { git, tempDir, waitFor } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCluster } from "../src/access.ts";
import { type EmbeddedCluster, startEmbeddedCluster } from "../src/cluster.ts";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { readEvents } from "../src/events.ts";
import { followRunEvents } from "../src/follow.ts";
import { adminBus, makeListRepo, writeScript } from "./fixtures.ts";

// `--nodes 3`: three clustered nats-servers (routes, a store each) with R3 streams and KV. SIGKILL of the node
// leading the EVENTS stream mid-run: the run completes green, and the node comes back and catches up.

const KEY = "sim-nodes-key-62fa";
let dir: Awaited<ReturnType<typeof tempDir>>;
let sim: SimLlmProcess;
let cluster: EmbeddedCluster;

beforeAll(async () => {
  dir = await tempDir("longshot-nodes-");
  sim = await startSimLlmProcess(await writeScript(dir.path, 3), KEY);
  cluster = await startEmbeddedCluster({
    stateDir: join(dir.path, "state"),
    nodes: 3,
    env: { LLM_BASE_URL: sim.url, LLM_API_KEY: KEY, LLM_MODEL: sim.model, MAX_WORKERS: "3" },
  });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  await sim?.stop();
  await dir?.cleanup();
});

describe("an embedded cluster of three nats-server nodes", () => {
  it("keeps every stream and KV bucket on three replicas", async () => {
    const bus = await adminBus(cluster, "nodes-r3");
    try {
      expect(cluster.natsUrl.split(",")).toHaveLength(3);
      for (const s of Object.values(Streams)) {
        const info = await bus.jsm.streams.info(s.name);
        expect(info.config.num_replicas, s.name).toBe(3);
        expect(info.cluster?.replicas?.length, s.name).toBe(2);
      }
      for (const b of Object.values(Buckets))
        expect((await bus.jsm.streams.info(`KV_${b}`)).config.num_replicas, b).toBe(3);
      for (const o of Object.values(ObjectStores))
        expect((await bus.jsm.streams.info(`OBJ_${o}`)).config.num_replicas, o).toBe(3);
    } finally {
      await bus.close();
    }
  });

  it("completes a run green when the node leading the EVENTS stream is SIGKILLed mid-run; the node rejoins", async () => {
    const repo = join(dir.path, "repo");
    await makeListRepo(repo);
    const bus = await adminBus(cluster, "nodes-run");
    try {
      const runId = "run-nodes";
      let killed: number | undefined;
      const follow = await followRunEvents(bus, runId, (line) => {
        if (killed === undefined && /merged {3}add-/.test(line)) {
          killed = -1;
          void bus.jsm.streams.info(Streams.EVENTS.name).then((info) => {
            const leader = info.cluster!.leader!; // "n1" | "n2" | "n3"
            killed = Number(leader.slice(1)) - 1;
            process.kill(cluster.natsPids()[killed]!, "SIGKILL");
          });
        }
      });
      await bus.js.publish("longshot.request", JSON.stringify({ runId, prompt: "Add list helpers", repo }));
      const outcome = await follow.outcome;
      expect(killed).toBeGreaterThanOrEqual(0);
      expect(outcome).toMatchObject({ kind: "completed", summary: { status: "green", merged: 3 } });
      const merged = (await readEvents(bus, `longshot.event.${runId}.merge.merged`)).map(
        (e) => (e.data as { taskId: string }).taskId,
      );
      expect(merged.sort()).toEqual(["add-first", "add-last", "add-second"]);
      const subjects = (await git(repo, "log", "--format=%s", "main")).split("\n");
      for (const t of ["add-first", "add-last", "add-second"])
        expect(subjects.filter((s) => s.startsWith(`${t}:`))).toHaveLength(1);
      // The killed node was restarted on its port and store, and every stream has three current replicas again.
      expect(cluster.natsRestarts()[killed!]).toBe(1);
      await waitFor(
        async () => {
          for (const s of Object.values(Streams)) {
            const c = (await bus.jsm.streams.info(s.name)).cluster;
            if (!c?.leader || c.replicas?.length !== 2 || c.replicas.some((r) => !r.current || r.offline))
              return false;
          }
          return true;
        },
        60_000,
        250,
      );
    } finally {
      await bus.close();
    }
  });

  it("reads the three-node store after the cluster stopped (runs, status, logs)", async () => {
    await cluster.stop();
    const store = await openCluster({
      env: {},
      stateDir: join(dir.path, "state"),
      log: createLogger({ service: "test", level: "silent" }),
      offline: true,
    });
    try {
      expect(store.kind).toBe("offline");
      const completed = await readEvents(store.bus, "longshot.event.run-nodes.run.completed");
      expect(completed.map((e) => (e.data as { status: string }).status)).toEqual(["green"]);
      // Reading changed nothing: still three replicas.
      expect((await store.bus.jsm.streams.info(Streams.EVENTS.name)).config.num_replicas).toBe(3);
    } finally {
      await store.close();
    }
  });
});
