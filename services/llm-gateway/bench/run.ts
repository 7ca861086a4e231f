/**
 * llm-gateway benchmark (`pnpm bench`): real processes on loopback — sim-llm replicas (`--replica`), the gateway
 * (`src/main.ts`) and this load generator.
 *
 * (a) Added latency: open-loop load of small non-streaming completions, BENCH_RATE req/s (default 500) straight
 *     to the replicas (client-side round robin) and the same rate through the gateway, interleaved tick by tick,
 *     after a warm-up of BENCH_WARMUP_SECONDS (default 3), in BENCH_ROUNDS rounds (default 5) of BENCH_SECONDS s (default 4). Prints p50/p90/p99
 *     of both paths and the added latency three ways: difference of pooled percentiles, per round (and their
 *     median), and request by request (each gateway request minus the direct one sent at the same tick); plus the
 *     gateway's own time before the upstream call and its CPU per request.
 * (b) Routing: BENCH_AGENTS (default 64) concurrent agent loops, BENCH_TURNS (default 8) turns each, sharing a
 *     long system prompt and growing their own history (assistant reply + tool output per turn), against 4
 *     replicas that model an SGLang server (shared prefill lane, LRU prefix cache of bounded size, paced
 *     decode). Once with round robin, once with cache-aware routing, once with cache-aware + session affinity
 *     (task-id header). Prints cache hit rate (cached/prompt tokens as reported by the replicas), throughput and
 *     mean/p50/p99 time to first token. Replicas are fresh for each policy.
 * (c) Gateway CPU per request under closed-loop load (see benchCpu).
 * BENCH_GATEWAY_NODE_OPTIONS becomes the gateway process's NODE_OPTIONS (e.g. `--cpu-prof`).
 * Every request loop is bounded in count and time; only 127.0.0.1 is contacted.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const SIM_MAIN = join(ROOT, "services/sim-llm/src/main.ts");
const GATEWAY_MAIN = join(ROOT, "services/llm-gateway/src/main.ts");
const env = (name: string, def: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : def;
};
const RATE = env("BENCH_RATE", 500);
const SECONDS = env("BENCH_SECONDS", 4);
const ROUNDS = env("BENCH_ROUNDS", 5);
const WARMUP = env("BENCH_WARMUP_SECONDS", 3);
const AGENTS = env("BENCH_AGENTS", 64);
const TURNS = env("BENCH_TURNS", 8);
const children: ChildProcess[] = [];
/** Writes one line of the report to stdout. */
const print = (line: string) => void process.stdout.write(`${line}\n`);

async function startProcess(
  args: string[],
  extraEnv: Record<string, string>,
  ready: (line: string) => string | undefined,
) {
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...extraEnv },
  });
  children.push(child);
  return new Promise<{ child: ChildProcess; url: string }>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      const url = ready(line);
      if (url) resolve({ child, url });
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
}

function startReplica(name: string, flags: string[]) {
  return startProcess(
    [SIM_MAIN, "--replica", "--name", name, "--model", "glm-5", ...flags],
    {},
    (line) => /^sim-llm listening on (\S+)$/.exec(line)?.[1],
  );
}

function startGatewayProcess(endpoints: { name: string; endpoint: string }[], extra: Record<string, string>) {
  return startProcess(
    [GATEWAY_MAIN],
    {
      LLM_ENDPOINTS: JSON.stringify(endpoints),
      GATEWAY_AUTH: "open",
      GATEWAY_PORT: "0",
      LOG_LEVEL: "info", // per-request lines are debug; info carries the "listening" line
      // e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the gateway under the benchmark's load
      ...(process.env.BENCH_GATEWAY_NODE_OPTIONS
        ? { NODE_OPTIONS: process.env.BENCH_GATEWAY_NODE_OPTIONS }
        : {}),
      ...extra,
    },
    (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; url?: string };
        return rec.msg === "llm-gateway listening" ? rec.url : undefined;
      } catch {
        return undefined;
      }
    },
  );
}

async function stopAll(): Promise<void> {
  await Promise.all(
    children.splice(0).map(async (c) => {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill("SIGTERM");
        await once(c, "exit");
      }
    }),
  );
}

const agent = new Agent({ keepAlive: true, maxSockets: 1024 });

interface Reply {
  status: number;
  overheadMs?: number;
  ms: number;
  ttftMs: number;
  content: string;
  usage?: {
    prompt_tokens: number;
    completion_tokens: number;
    prompt_tokens_details?: { cached_tokens?: number };
  };
}

/**
 * POSTs a chat completion; with `parse` (default) the answer is parsed for content and usage (streams too).
 * The latency benchmarks pass false: the load generator then only reads the bytes, leaving the CPU to the
 * processes being measured.
 */
function post(
  baseUrl: string,
  body: string,
  headers: Record<string, string> = {},
  parse = true,
): Promise<Reply> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      `${baseUrl}/chat/completions`,
      { method: "POST", agent, headers: { "content-type": "application/json", ...headers } },
      (res) => {
        let ttft = 0;
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => {
          if (ttft === 0) ttft = performance.now() - t0;
          chunks.push(c);
        });
        res.on("end", () => {
          const ms = performance.now() - t0;
          const out: Reply = { status: res.statusCode ?? 0, ms, ttftMs: ttft, content: "" };
          const oh = res.headers["x-longshot-overhead-ms"];
          if (typeof oh === "string") out.overheadMs = Number(oh);
          if (!parse) {
            resolve(out);
            return;
          }
          const text = Buffer.concat(chunks).toString();
          if (text.startsWith("data:")) {
            for (const line of text.split("\n")) {
              if (!line.startsWith("data: {")) continue;
              const obj = JSON.parse(line.slice(6)) as {
                choices: { delta?: { content?: string } }[];
                usage?: Reply["usage"];
              };
              out.content += obj.choices[0]?.delta?.content ?? "";
              if (obj.usage) out.usage = obj.usage;
            }
          } else if (out.status === 200) {
            const obj = JSON.parse(text) as {
              choices: { message: { content: string } }[];
              usage: Reply["usage"];
            };
            out.content = obj.choices[0]?.message.content ?? "";
            out.usage = obj.usage;
          }
          resolve(out);
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const f2 = (x: number) => x.toFixed(2);

/** One path's results of an {@link openLoop}. */
interface PathResult {
  /** Latency (ms) of request i, NaN when it failed; requests with the same index were sent at the same tick. */
  byIndex: Float64Array;
  /** Sorted latencies (ms) of the successful requests. */
  latencies: number[];
  /** Sorted `x-longshot-overhead-ms` values (gateway path only). */
  overheads: number[];
  errors: number;
  /** Achieved send rate (req/s). */
  achieved: number;
  /** Largest lateness of a tick (ms): how long the load generator itself was held up (a machine stall). */
  maxLateMs: number;
}

/**
 * Open-loop load: `rate` req/s per path for `seconds`; at every tick one request goes down each path (the
 * direct one round-robins over the replicas), so both paths share the same machine noise. A tick that is late
 * (the load generator was descheduled) is sent at once: latencies are not hidden by coordinated omission.
 */
async function openLoop(paths: string[][], rate: number, seconds: number): Promise<PathResult[]> {
  const total = Math.round(rate * seconds);
  const body = JSON.stringify({
    model: "glm-5",
    messages: [{ role: "user", content: "Say something short." }],
  });
  const out: PathResult[] = paths.map(() => ({
    byIndex: new Float64Array(total).fill(Number.NaN),
    latencies: [],
    overheads: [],
    errors: 0,
    achieved: 0,
    maxLateMs: 0,
  }));
  let maxLate = 0;
  let outstanding = 0;
  let drained: (() => void) | undefined;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    else if (-wait > maxLate) maxLate = -wait;
    paths.forEach((targets, p) => {
      const o = out[p]!;
      outstanding++;
      post(targets[i % targets.length]!, body, {}, false)
        .then(
          (r) => {
            if (r.status !== 200) o.errors++;
            else {
              o.byIndex[i] = r.ms;
              o.latencies.push(r.ms);
              if (r.overheadMs !== undefined) o.overheads.push(r.overheadMs);
            }
          },
          () => {
            o.errors++;
          },
        )
        .finally(() => {
          if (--outstanding === 0) drained?.();
        });
    });
  }
  const sendSeconds = (performance.now() - start) / 1000;
  if (outstanding > 0) await new Promise<void>((resolve) => (drained = resolve));
  for (const o of out) {
    o.latencies.sort((a, b) => a - b);
    o.overheads.sort((a, b) => a - b);
    o.achieved = total / sendSeconds;
    o.maxLateMs = maxLate;
  }
  return out;
}

/** CPU time (user + system, ms) a process used so far, from `/proc/<pid>/stat`; undefined off Linux. */
function cpuMs(pid: number | undefined): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
/** USER_HZ of /proc/<pid>/stat times (100 on Linux builds we know). */
const CLOCK_TICKS = 100;

const median = (xs: number[]) =>
  pct(
    [...xs].sort((a, b) => a - b),
    50,
  );

async function benchLatency(): Promise<void> {
  print(
    `\n(a) gateway added latency — open loop, ${RATE} req/s through the gateway and ${RATE} req/s straight to the replicas, interleaved, ${ROUNDS} rounds × ${SECONDS} s, non-streaming, 3 replicas`,
  );
  const reps = await Promise.all([1, 2, 3].map((i) => startReplica(`lat${i}`, ["--reply-tokens", "16"])));
  const gw = await startGatewayProcess(
    reps.map((r, i) => ({ name: `lat${i + 1}`, endpoint: r.url })),
    {},
  );
  const paths = [reps.map((r) => r.url), [gw.url]];
  await openLoop(paths, RATE, WARMUP); // warm-up: connections, JIT tiers, heap sizing
  const rounds: { d: PathResult; g: PathResult }[] = [];
  const cpu0 = cpuMs(gw.child.pid);
  for (let r = 0; r < ROUNDS; r++) {
    const [d, g] = (await openLoop(paths, RATE, SECONDS)) as [PathResult, PathResult];
    rounds.push({ d, g });
  }
  const cpu1 = cpuMs(gw.child.pid);
  const pooled = (k: "d" | "g") => {
    const lat = rounds.flatMap((x) => x[k].latencies).sort((a, b) => a - b);
    const overheads = rounds.flatMap((x) => x[k].overheads).sort((a, b) => a - b);
    const errors = rounds.reduce((s, x) => s + x[k].errors, 0);
    const achieved = median(rounds.map((x) => x[k].achieved));
    return { lat, overheads, errors, achieved, requests: lat.length + errors };
  };
  const d = pooled("d");
  const g = pooled("g");
  print("  path      sent req/s   p50 ms   p90 ms   p99 ms   errors");
  for (const [name, r] of [
    ["direct ", d],
    ["gateway", g],
  ] as const) {
    print(
      `  ${name}   ${r.achieved.toFixed(0).padStart(10)}   ${f2(pct(r.lat, 50)).padStart(6)}   ${f2(pct(r.lat, 90)).padStart(6)}   ${f2(pct(r.lat, 99)).padStart(6)}   ${r.errors}`,
    );
  }
  const perRound = rounds.map((x) => ({
    p50: pct(x.g.latencies, 50) - pct(x.d.latencies, 50),
    p99: pct(x.g.latencies, 99) - pct(x.d.latencies, 99),
  }));
  const paired: number[] = [];
  for (const { d: rd, g: rg } of rounds) {
    for (let i = 0; i < rd.byIndex.length; i++) {
      const diff = rg.byIndex[i]! - rd.byIndex[i]!;
      if (!Number.isNaN(diff)) paired.push(diff);
    }
  }
  paired.sort((a, b) => a - b);
  print(
    `  added by the gateway, difference of percentiles, all rounds pooled: p50 ${f2(pct(g.lat, 50) - pct(d.lat, 50))} ms, p99 ${f2(pct(g.lat, 99) - pct(d.lat, 99))} ms`,
  );
  print(
    `  added by the gateway, difference of percentiles, per round: p50 ${perRound.map((x) => f2(x.p50)).join(" ")} ms; p99 ${perRound.map((x) => f2(x.p99)).join(" ")} ms (median p50 ${f2(median(perRound.map((x) => x.p50)))}, p99 ${f2(median(perRound.map((x) => x.p99)))})`,
  );
  print(
    `  load generator's largest lateness per round (a machine stall shows here too): ${rounds.map((x) => x.d.maxLateMs.toFixed(0)).join(" ")} ms`,
  );
  print(
    `  added by the gateway, request by request (gateway minus the direct request sent at the same tick): p50 ${f2(pct(paired, 50))} ms, p99 ${f2(pct(paired, 99))} ms`,
  );
  const added50 = pct(g.lat, 50) - pct(d.lat, 50);
  const added99 = pct(g.lat, 99) - pct(d.lat, 99);
  const verdict = (x: number, goal: number) => (x <= goal ? "met" : "missed");
  print(
    `  goals (pooled): p50 ≤ 1 ms ${verdict(added50, 1)}, p99 ≤ 5 ms ${verdict(added99, 5)}; rounds with p99 ≤ 5 ms: ${perRound.filter((x) => x.p99 <= 5).length} of ${perRound.length}`,
  );
  print(
    `  gateway's own time before the upstream call (x-longshot-overhead-ms): p50 ${pct(g.overheads, 50).toFixed(3)} ms, p99 ${pct(g.overheads, 99).toFixed(3)} ms`,
  );
  if (cpu0 !== undefined && cpu1 !== undefined) {
    print(
      `  gateway CPU per request (user + system, from /proc): ${(((cpu1 - cpu0) * 1000) / g.requests).toFixed(0)} µs`,
    );
  }
  await stopAll();
}

// ---- (b) agent loops -------------------------------------------------------------------------------------------

const WORDS =
  "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split(
    " ",
  );
/** Deterministic pseudo-text of `chars` characters, different per seed. */
function text(seed: number, chars: number): string {
  let s = "";
  let x = seed * 2654435761;
  while (s.length < chars) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += `${WORDS[x % WORDS.length]} `;
  }
  return s.slice(0, chars);
}

interface PolicyResult {
  name: string;
  requests: number;
  seconds: number;
  promptTokens: number;
  cachedTokens: number;
  ttfts: number[];
  errors: number;
  gatewayCacheHits: number;
  gatewayCacheMisses: number;
}

const REPLICA_FLAGS = [
  "--ttft-ms",
  "5",
  "--prefill-tps",
  "40000", // uncached prompt tokens per second, one prefill lane per replica
  "--tps",
  "200", // decode speed per request (prefill:decode speed ratio 200:1, in the range of a GPU replica)
  "--reply-tokens",
  "48",
  "--cache-tokens",
  "150000", // bounded KV cache per replica (LRU)
];
const SYSTEM = `You are a coding agent working on a large repository. ${text(1, 12_000)}`; // ≈ 3 000 tokens shared

async function benchPolicy(
  name: string,
  gatewayEnv: Record<string, string>,
  affinityHeader: boolean,
): Promise<PolicyResult> {
  const reps = await Promise.all([1, 2, 3, 4].map((i) => startReplica(`cache${i}`, REPLICA_FLAGS)));
  const gw = await startGatewayProcess(
    reps.map((r, i) => ({ name: `cache${i + 1}`, endpoint: r.url })),
    { GATEWAY_HEALTH_INTERVAL_MS: "0", ...gatewayEnv },
  );
  const res: PolicyResult = {
    name,
    requests: 0,
    seconds: 0,
    promptTokens: 0,
    cachedTokens: 0,
    ttfts: [],
    errors: 0,
    gatewayCacheHits: 0,
    gatewayCacheMisses: 0,
  };
  const start = performance.now();
  const deadline = start + 120_000;
  await Promise.all(
    Array.from({ length: AGENTS }, async (_, a) => {
      const messages: { role: string; content: string }[] = [
        { role: "system", content: SYSTEM },
        { role: "user", content: `Task ${a}: ${text(1000 + a, 1200)}` },
      ];
      for (let turn = 0; turn < TURNS && performance.now() < deadline; turn++) {
        const body = JSON.stringify({
          model: "glm-5",
          messages,
          stream: true,
          stream_options: { include_usage: true },
        });
        const r = await post(
          gw.url,
          body,
          affinityHeader ? { "x-longshot-task-id": `agent-${a}` } : {},
        ).catch(() => undefined);
        if (r === undefined || r.status !== 200) {
          res.errors++;
          continue;
        }
        res.requests++;
        res.ttfts.push(r.ttftMs);
        res.promptTokens += r.usage?.prompt_tokens ?? 0;
        res.cachedTokens += r.usage?.prompt_tokens_details?.cached_tokens ?? 0;
        messages.push({ role: "assistant", content: r.content });
        messages.push({ role: "user", content: `Tool output (turn ${turn}): ${text(a * 100 + turn, 1600)}` });
      }
    }),
  );
  res.seconds = (performance.now() - start) / 1000;
  const metrics = await (await fetch(gw.url.replace("/v1", "/metrics"))).text();
  // Cache-aware routing decisions by reason (a miss includes the load-imbalance guard's overrides).
  const decisions = (reason: string) =>
    [...metrics.matchAll(/^llm_gateway_policy_decisions_total\{([^}]*)\} (\S+)$/gm)]
      .filter((m) => m[1]!.includes(`reason="${reason}"`))
      .reduce((sum, m) => sum + Number(m[2]), 0);
  res.gatewayCacheHits = decisions("cache_hit");
  res.gatewayCacheMisses = decisions("cache_miss") + decisions("load_imbalance");
  res.ttfts.sort((x, y) => x - y);
  await stopAll();
  return res;
}

async function benchRouting(): Promise<void> {
  print(
    `\n(b) routing — ${AGENTS} concurrent agent loops × ${TURNS} turns, shared ≈3k-token system prompt, +≈450 tokens/turn, 4 replicas`,
  );
  print(
    "    replicas: prefill 40k tok/s (shared lane), decode 200 tok/s/request, 48-token replies, 150k-token LRU cache",
  );
  const results = [
    await benchPolicy(
      "round_robin",
      { GATEWAY_POLICY: "round_robin", GATEWAY_SESSION_AFFINITY: "false" },
      false,
    ),
    await benchPolicy(
      "cache_aware",
      { GATEWAY_POLICY: "cache_aware", GATEWAY_SESSION_AFFINITY: "false" },
      false,
    ),
    await benchPolicy("cache_aware+affinity", { GATEWAY_POLICY: "cache_aware" }, true),
  ];
  print("  policy                 requests  req/s   cache hit rate  ttft mean  ttft p50  ttft p99  errors");
  for (const r of results) {
    const mean = r.ttfts.reduce((s, x) => s + x, 0) / Math.max(1, r.ttfts.length);
    print(
      `  ${r.name.padEnd(22)} ${String(r.requests).padStart(8)}  ${(r.requests / r.seconds).toFixed(1).padStart(5)}   ${`${((100 * r.cachedTokens) / Math.max(1, r.promptTokens)).toFixed(1)} %`.padStart(14)}  ${f2(mean).padStart(9)}  ${f2(pct(r.ttfts, 50)).padStart(8)}  ${f2(pct(r.ttfts, 99)).padStart(8)}  ${r.errors}`,
    );
  }
  const [rr, ca, caa] = results as [PolicyResult, PolicyResult, PolicyResult];
  const thr = (r: PolicyResult) => r.requests / r.seconds;
  const hit = (r: PolicyResult) => r.cachedTokens / Math.max(1, r.promptTokens);
  print(
    `  cache_aware vs round_robin: throughput ×${(thr(ca) / thr(rr)).toFixed(2)}, cache hit rate ×${(hit(ca) / hit(rr)).toFixed(2)}` +
      ` (gateway prefix decisions: ${ca.gatewayCacheHits} hits / ${ca.gatewayCacheMisses} misses)`,
  );
  print(
    `  cache_aware+affinity vs round_robin: throughput ×${(thr(caa) / thr(rr)).toFixed(2)}, cache hit rate ×${(hit(caa) / hit(rr)).toFixed(2)}`,
  );
}

// ---- (c) CPU per request ---------------------------------------------------------------------------------------

/**
 * (c) Gateway CPU per request under closed-loop load: BENCH_CONCURRENCY (default 8) request loops, 1 000
 * warm-up then BENCH_REQUESTS (default 10 000) small non-streaming completions through the gateway in front of
 * one replica; CPU time (user + system) of the gateway process from /proc over the measured requests.
 */
async function benchCpu(): Promise<void> {
  const concurrency = env("BENCH_CONCURRENCY", 8);
  const requests = env("BENCH_REQUESTS", 10_000);
  print(`\n(c) gateway CPU per request — closed loop, ${concurrency} loops, ${requests} requests, 1 replica`);
  const rep = await startReplica("cpu1", ["--reply-tokens", "16"]);
  const gw = await startGatewayProcess([{ name: "cpu1", endpoint: rep.url }], {
    GATEWAY_HEALTH_INTERVAL_MS: "0",
  });
  const body = JSON.stringify({
    model: "glm-5",
    messages: [{ role: "user", content: "Say something short." }],
  });
  const loops = async (n: number) => {
    let left = n;
    let errors = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (left-- > 0) {
          const r = await post(gw.url, body, {}, false).catch(() => undefined);
          if (r?.status !== 200) errors++;
        }
      }),
    );
    return errors;
  };
  await loops(1000);
  const c0 = cpuMs(gw.child.pid);
  const t0 = performance.now();
  const errors = await loops(requests);
  const seconds = (performance.now() - t0) / 1000;
  const c1 = cpuMs(gw.child.pid);
  const perRequest =
    c0 === undefined || c1 === undefined ? "n/a" : `${(((c1 - c0) * 1000) / requests).toFixed(0)} µs`;
  print(
    `  ${(requests / seconds).toFixed(0)} req/s through the gateway, gateway CPU per request ${perRequest}, errors ${errors}`,
  );
  await stopAll();
}

try {
  const which = process.argv[2] ?? "all";
  if (!["all", "latency", "routing", "cpu"].includes(which))
    throw new Error(`unknown benchmark ${which}: use latency, routing, cpu or nothing (all)`);
  if (which === "all" || which === "latency") await benchLatency();
  if (which === "all" || which === "cpu") await benchCpu();
  if (which === "all" || which === "routing") await benchRouting();
} finally {
  await stopAll();
  agent.destroy();
}
