import { join } from "node:path";
import { git } from "@longshot/testkit";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EmbeddedCluster } from "../src/cluster.ts";
import {
  clusterScript,
  DECOMPOSED_PROMPT,
  makeListRepo,
  runEvents,
  type SeenEvent,
  type SimCluster,
  startSimCluster,
} from "./fixtures.ts";

// Horizontal scale on NATS (#9): two instances each of the planner, subplanner, dispatcher and merger on one
// cluster, two runs at once (one planned directly, one decomposed by the subplanner). The instances share the
// role's durable consumers, so each run's handoffs and merge events reach both planners: every task must still
// be planned, run and merged exactly once, and each run planned by one planner at a time.

const KEY = "sim-scale-key-9d1e";
let t: SimCluster;
let cluster: EmbeddedCluster;
let nc: NatsConnection;

beforeAll(async () => {
  t = await startSimCluster({
    prefix: "longshot-scale-",
    key: KEY,
    script: clusterScript(),
    instances: 2,
    env: { MAX_WORKERS: "2" },
  });
  ({ cluster, nc } = t);
}, 120_000);

afterAll(() => t?.stop());

const ofType = (seen: SeenEvent[], type: string) => seen.filter((e) => e.type === type);
/** How often each value occurs. */
function countBy(xs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

describe("two instances of each scaled service on one cluster", () => {
  it("runs every process of both instances", () => {
    const pids = cluster.pids();
    for (const svc of ["planner", "subplanner", "dispatcher", "merger"]) {
      expect(pids[svc], svc).toBeGreaterThan(0);
      expect(pids[`${svc}-2`], `${svc}-2`).toBeGreaterThan(0);
      expect(pids[`${svc}-2`]).not.toBe(pids[svc]);
    }
  });

  it("completes two runs at once green: every task planned, handed off and merged exactly once", async () => {
    const runs = [
      { runId: "run-scale-list", prompt: "Add the list helpers", repo: join(t.dir.path, "list") },
      { runId: "run-scale-decomposed", prompt: DECOMPOSED_PROMPT, repo: join(t.dir.path, "decomposed") },
    ];
    for (const r of runs) await makeListRepo(r.repo);
    // Generous: 65 s alone, several times that beside the demo on a loaded 2-core machine.
    const done = runs.map((r) =>
      runEvents(nc, r.runId, "run.completed", { timeoutMs: 220_000, diagnose: t.diagnose }),
    );
    for (const r of runs) nc.publish("longshot.request", JSON.stringify(r));
    const seen = await Promise.all(done);
    // Late duplicates (a second planner completing the run again, a second merge) would arrive after the first
    // run.completed: keep listening a little.
    const late: SeenEvent[][] = runs.map(() => []);
    const subs = runs.map((r, i) =>
      nc.subscribe(`longshot.event.${r.runId}.>`, {
        callback: (_e, m) => void late[i]!.push(m.json<SeenEvent>()),
      }),
    );
    await new Promise((r) => setTimeout(r, 5_000));
    for (const s of subs) s.unsubscribe();

    for (const [i, r] of runs.entries()) {
      const events = [...seen[i]!, ...late[i]!];
      const summary = seen[i]!.at(-1)!.data;
      expect(summary, r.runId).toMatchObject({ status: "green" });
      expect(ofType(events, "run.completed"), r.runId).toHaveLength(1);
      // One planning round per iteration number: never two planners planning the same run at once.
      const iterations = ofType(events, "planner.iteration").map((e) => String(e.data.iteration));
      expect(
        Object.values(countBy(iterations)).every((n) => n === 1),
        JSON.stringify(iterations),
      ).toBe(true);
      const planned = ofType(events, "task.planned").map((e) => {
        const t = e.data.task as { id: string; attempt: number };
        return `${t.id}#${t.attempt}`;
      });
      expect(
        Object.values(countBy(planned)).every((n) => n === 1),
        JSON.stringify(planned),
      ).toBe(true);
      const started = ofType(events, "task.started").map((e) => `${e.data.taskId}#${e.data.attempt}`);
      expect(
        Object.values(countBy(started)).every((n) => n === 1),
        JSON.stringify(started),
      ).toBe(true);
      const merged = ofType(events, "merge.merged").map((e) => String(e.data.taskId));
      expect(countBy(merged), r.runId).toEqual(
        Object.fromEntries(
          (r.prompt === DECOMPOSED_PROMPT
            ? ["add-all-sub-1", "add-all-sub-2", "add-all-sub-3"]
            : ["add-first", "add-last", "add-second"]
          ).map((id) => [id, 1]),
        ),
      );
      // Each helper once on main, the work of both instances' sandboxes landed by whichever merger took it.
      const list = await git(r.repo, "show", "main:src/list.ts");
      for (const fn of ["first", "last", "second"])
        expect(list.split(`export function ${fn}<T>`).length - 1, `${r.runId}: ${fn}`).toBe(1);
    }
  }, 260_000);
});
