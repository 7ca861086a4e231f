/**
 * Control-plane benchmark (`pnpm bench control-plane [N …]`, default N = 50 200): a real embedded cluster (NATS,
 * gateway, every service, bubblewrap sandboxes) runs one request of N trivial tasks — each writes its own file,
 * through the `command` harness (no Pi) — against an instant scripted model. For each N it prints:
 *   - merged tasks/h (first task planned → last task merged), the git-only limit measured in the same run (the
 *     fetch + rebase + push of N one-file branches, sequentially, the merger's minimal loop) and their ratio;
 *   - control-plane CPU-s per merged task: user+system CPU of every service process and nats-server (sandboxes
 *     are separate processes and not counted) over the run, divided by N;
 *   - planner tokens per call, first and last (`planner.iteration` events);
 *   - run-state KV bytes written per task (`longshot_planner_state_bytes_written_total` / N);
 *   - publish→merge latency p50/p95 (`task.planned` → `merge.merged` event times);
 *   - peak RSS per service (VmHWM).
 * Goals (issue #9): ≥ 20,000 merged tasks/h and ≥ 40 % of the git-only limit; ≤ 0.1 control-plane CPU-s per
 * merged task; planner tokens per call at N=1000 ≤ 2× those at N=50; every service ≤ 150 MB RSS at N=1000.
 * Environment: BENCH_MERGE_VERIFY (on|off, default on), BENCH_MAX_WORKERS (default 8: on a 2-core machine 50 concurrent sandboxes starve the control plane,
 * N=50 merged 4,786 tasks/h at 8 against ~1,500/h at 50).
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os, { tmpdir } from "node:os";
import { join } from "node:path";
import { makeRepo } from "@longshot/testkit";
import { connect } from "@nats-io/transport-node";
import { startEmbeddedCluster } from "../src/cluster.ts";
import { startSimLlmProcess } from "../src/demo.ts";

const KEY = "bench-control-plane-key";
/** The merge queue's verification (BENCH_MERGE_VERIFY, default on like MERGE_VERIFY). */
const MERGE_VERIFY = process.env.BENCH_MERGE_VERIFY === "off" ? "off" : "on";
const MAX_WORKERS = Number(process.env.BENCH_MAX_WORKERS) > 0 ? Number(process.env.BENCH_MAX_WORKERS) : 8;
const HANDOFF = JSON.stringify({
  status: "complete",
  summary: "wrote",
  filesChanged: [],
  concerns: [],
  suggestions: [],
});
/** The `command` harness: the task id from the prompt's first line, one file per task, a complete handoff. */
const WORKER_COMMAND = `id=$(head -1 {prompt_file} | sed 's/^## Task: //'); mkdir -p tasks; echo "$id" > "tasks/$id.txt"; echo '${HANDOFF}'`;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

/**
 * CPU seconds of `pid` from one read of /proc/<pid>/stat (clock ticks of 100 Hz): `own` = utime + stime (fields
 * 14, 15), `children` = cutime + cstime (16, 17) of the children it has waited for (for the dispatcher its
 * sandboxes and git, for the merger its git and verification sandboxes). Zeros when the process is gone.
 */
async function processCpu(pid: number | undefined): Promise<{ own: number; children: number }> {
  if (!pid) return { own: 0, children: 0 };
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const s = (i: number) => Number(f[i] ?? 0) / 100;
  return { own: s(11) + s(12), children: s(13) + s(14) };
}

/** The machine's busy and total CPU time so far, seconds (first line of /proc/stat; idle + iowait are not busy). */
async function machineCpu(): Promise<{ busy: number; total: number }> {
  const [, ...f] = (await readFile("/proc/stat", "utf8")).split("\n")[0]!.trim().split(/\s+/);
  const ticks = f.slice(0, 8).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  return { busy: (total - ticks[3]! - ticks[4]!) / 100, total: total / 100 };
}

/** Peak resident set of `pid` in MB (VmHWM). */
async function peakRssMb(pid: number | undefined): Promise<number> {
  if (!pid) return 0;
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : 0;
}

/** The git-only limit: fetch + rebase + push of `n` one-file branches onto a bare target, sequentially. */
async function gitOnlyRate(n: number): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), "longshot-bench-git-"));
  const git = (cwd: string, ...args: string[]) =>
    execFileSync("git", ["-c", "user.name=b", "-c", "user.email=b@b", ...args], { cwd, stdio: "pipe" });
  try {
    git(dir, "init", "-q", "--bare", "-b", "main", "target.git");
    git(dir, "clone", "-q", "target.git", "seed");
    await writeFile(join(dir, "seed", "README.md"), "x\n");
    git(join(dir, "seed"), "add", "-A");
    git(join(dir, "seed"), "commit", "-qm", "init");
    git(join(dir, "seed"), "push", "-q", "origin", "main");
    // The branches, as workers would have pushed them (not timed).
    for (let i = 0; i < n; i++) {
      git(join(dir, "seed"), "checkout", "-q", "-B", `b${i}`, "origin/main");
      await writeFile(join(dir, "seed", `f${i}.txt`), `${i}\n`);
      git(join(dir, "seed"), "add", "-A");
      git(join(dir, "seed"), "commit", "-qm", `b${i}`);
      git(join(dir, "seed"), "push", "-q", "origin", `b${i}`);
    }
    git(dir, "clone", "-q", "target.git", "merger");
    const m = join(dir, "merger");
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      git(m, "fetch", "-q", "origin", "main", `b${i}`);
      git(m, "checkout", "-q", "-B", "work", `origin/b${i}`);
      git(m, "rebase", "-q", "origin/main");
      git(m, "push", "-q", "origin", "work:main");
    }
    return n / ((performance.now() - t0) / 3_600_000);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function benchOnce(n: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "longshot-bench-cp-"));
  const repo = join(dir, "target");
  await makeRepo(repo, { "README.md": "# bench target\n" });
  const ids = Array.from({ length: n }, (_, i) => `t${String(i).padStart(4, "0")}`);
  const script = {
    model: "sim-bench",
    conversations: [
      {
        name: "planner",
        match: { system: "You are the root planner" },
        turns: [
          {
            content: JSON.stringify({
              tasks: ids.map((id) => ({ id, description: `Write ${id}`, scope: [`tasks/${id}.txt`] })),
            }),
          },
          { content: JSON.stringify({ tasks: [] }) },
        ],
      },
    ],
  };
  await writeFile(join(dir, "script.json"), JSON.stringify(script));
  const sim = await startSimLlmProcess(join(dir, "script.json"), KEY);
  const cluster = await startEmbeddedCluster({
    stateDir: join(dir, "state"),
    env: {
      LLM_BASE_URL: sim.url,
      LLM_API_KEY: KEY,
      LLM_MODEL: sim.model,
      MAX_WORKERS: String(MAX_WORKERS),
      WORKER_HARNESS: "command",
      WORKER_COMMAND,
      MERGE_VERIFY: MERGE_VERIFY,
      LOG_LEVEL: "warn",
    },
  });
  const nc = await connect(cluster.client);
  try {
    const pids = () => ({
      ...cluster.pids(),
      ...Object.fromEntries(cluster.natsPids().map((p, i) => [`nats-${i + 1}`, p])),
    });
    /** Own and children's CPU seconds per process, keyed by process name. */
    const sampleCpu = async () => {
      const all = await Promise.all(
        Object.entries(pids()).map(async ([k, p]) => [k, await processCpu(p)] as const),
      );
      return {
        own: Object.fromEntries(all.map(([k, c]) => [k, c.own])),
        children: Object.fromEntries(all.map(([k, c]) => [k, c.children])),
      };
    };
    const { own: cpu0, children: child0 } = await sampleCpu();
    const wall0 = performance.now();
    const machine0 = await machineCpu();
    const runId = `bench-${n}`;
    const planned = new Map<string, number>();
    const merged = new Map<string, number>();
    const started = new Map<string, number>();
    const finished = new Map<string, number>();
    const iterations: number[] = [];
    let summary: Record<string, unknown> = {};
    const sub = nc.subscribe(`longshot.event.${runId}.>`);
    const done = (async () => {
      for await (const m of sub) {
        const e = m.json<{ type: string; ts: string; data: Record<string, unknown> }>();
        const at = Date.parse(e.ts);
        if (e.type === "task.planned") planned.set((e.data.task as { id: string }).id, at);
        else if (e.type === "merge.merged") merged.set(String(e.data.taskId), at);
        else if (e.type === "task.started") started.set(String(e.data.taskId), at);
        else if (e.type === "task.finished") finished.set(String(e.data.taskId), at);
        else if (e.type === "planner.iteration") iterations.push(Number(e.data.tokens));
        else if (e.type === "run.completed") {
          summary = e.data;
          break;
        }
      }
    })();
    nc.publish(
      "longshot.request",
      JSON.stringify({ runId, prompt: `Write ${n} files`, repo, maxWorkers: MAX_WORKERS }),
    );
    await done;
    const wallS = (performance.now() - wall0) / 1000;
    const machine1 = await machineCpu();
    const { own: cpu1, children: child1 } = await sampleCpu();
    const childCpu = Object.keys(child1)
      .map((k) => [k, child1[k]! - (child0[k] ?? 0)] as const)
      .filter(([, v]) => v > 0.05);
    const rss = Object.fromEntries(
      await Promise.all(Object.entries(pids()).map(async ([k, p]) => [k, await peakRssMb(p)] as const)),
    );
    const targets = cluster.metricsTargets();
    const metrics = await Promise.all(
      targets.map(
        async (t) =>
          (await fetch(`${t.url}/metrics`)
            .then((r) => r.text())
            .catch(() => "")) as string,
      ),
    );
    // What the JS heap holds at the end (prom-client's default metric): a peak RSS far above it is garbage not
    // yet collected or memory outside the heap, not retained state.
    const heapMb = targets.map((t, i) => {
      const m = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})? ([\d.e+]+)/m.exec(metrics[i]!);
      return `${t.service} ${m ? (Number(m[1]) / 1024 / 1024).toFixed(0) : "-"}`;
    });
    const stateBytes = metrics
      .flatMap((text) => [
        ...text.matchAll(/^longshot_planner_state_bytes_written_total\{[^}]*\} ([\d.e+]+)/gm),
      ])
      .reduce((a, m) => a + Number(m[1]), 0);
    const first = Math.min(...planned.values());
    const last = Math.max(...merged.values());
    const perHour = merged.size / ((last - first) / 3_600_000);
    const latencies = [...merged].flatMap(([id, t]) => (planned.has(id) ? [t - planned.get(id)!] : []));
    /** p50 of `to - from` over the tasks that have both, seconds. */
    const stage = (from: Map<string, number>, to: Map<string, number>) =>
      (
        pct(
          [...to].flatMap(([id, t]) => (from.has(id) ? [t - from.get(id)!] : [])),
          50,
        ) / 1000
      ).toFixed(1);
    const cpu = Object.keys(cpu1).reduce((a, k) => a + (cpu1[k]! - (cpu0[k] ?? 0)), 0);
    const gitLimit = await gitOnlyRate(Math.min(n, 200));
    console.log(
      `\nN = ${n} (MAX_WORKERS ${MAX_WORKERS}, MERGE_VERIFY ${MERGE_VERIFY}): run ${summary.status}, ${merged.size} merged`,
    );
    console.log(`  merged tasks/h            ${perHour.toFixed(0)}`);
    console.log(
      `  git-only limit /h         ${gitLimit.toFixed(0)}   ratio ${((100 * perHour) / gitLimit).toFixed(1)} %`,
    );
    console.log(
      `  control-plane CPU-s/task  ${(cpu / Math.max(1, merged.size)).toFixed(3)}   (${cpu.toFixed(1)} s total)`,
    );
    console.log(
      `  CPU-s by process          ${Object.keys(cpu1)
        .map((k) => [k, cpu1[k]! - (cpu0[k] ?? 0)] as const)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(", ")}`,
    );
    console.log(
      `  planner tokens per call   first ${iterations[0] ?? "-"}, last ${iterations.at(-1) ?? "-"} (${iterations.length} calls)`,
    );
    console.log(`  state bytes written/task  ${(stateBytes / Math.max(1, n)).toFixed(0)}`);
    console.log(
      `  publish→merge             p50 ${(pct(latencies, 50) / 1000).toFixed(1)} s, p95 ${(pct(latencies, 95) / 1000).toFixed(1)} s`,
    );
    console.log(
      `  stages p50 s              planned→started ${stage(planned, started)}, started→finished ${stage(started, finished)}, finished→merged ${stage(finished, merged)}; tasks started ${started.size} over ${((Math.max(...started.values()) - Math.min(...started.values())) / 1000).toFixed(0)} s`,
    );
    console.log(
      `  peak RSS MB               ${Object.entries(rss)
        .map(([k, v]) => `${k} ${v.toFixed(0)}`)
        .join(", ")}`,
    );
    console.log(`  JS heap used at end MB    ${heapMb.join(", ")}`);
    const childTotal = childCpu.reduce((a, [, v]) => a + v, 0);
    console.log(
      `  children CPU-s/task       ${(childTotal / Math.max(1, merged.size)).toFixed(3)}   (sandboxes and git: ${childCpu
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(", ")})`,
    );
    console.log(
      `  machine CPU               ${(machine1.busy - machine0.busy).toFixed(0)} of ${(machine1.total - machine0.total).toFixed(0)} CPU-s busy in ${wallS.toFixed(0)} s (${os.availableParallelism()} cores)`,
    );
  } finally {
    await nc.drain();
    await cluster.stop();
    await sim.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((x) => x > 0);
for (const n of sizes.length ? sizes : [50, 200]) await benchOnce(n);
