import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Bus, connectBus } from "@longshot/bus";
import { createLogger } from "@longshot/log";
import { logTails, makeRepo, tempDir } from "@longshot/testkit";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type EmbeddedCluster, startEmbeddedCluster } from "../src/cluster.ts";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";

/**
 * A tiny target and its sim-llm script for cluster tests: tasks that each fill their own region of the
 * same file (`src/list.ts`) plus a test file, so every merge after the first needs a rebase.
 */
const REGIONS = ["first", "last", "second"] as const;

const LIST_TS = [
  "// list helpers",
  ...REGIONS.flatMap((r, i) => [
    `// region: ${r}`,
    `// end region: ${r}`,
    "",
    `export function helper${i}(xs: readonly unknown[]): number {`,
    "  return xs.length;",
    "}",
    "",
  ]),
].join("\n");

const FNS: Record<(typeof REGIONS)[number], { fn: string; test: string }> = {
  first: {
    fn: "export function first<T>(xs: readonly T[]): T | undefined {\n  return xs[0];\n}",
    test: 'test("first", () => assert.equal(first([1, 2]), 1));',
  },
  last: {
    fn: "export function last<T>(xs: readonly T[]): T | undefined {\n  return xs[xs.length - 1];\n}",
    test: 'test("last", () => assert.equal(last([1, 2]), 2));',
  },
  second: {
    fn: "export function second<T>(xs: readonly T[]): T | undefined {\n  return xs[1];\n}",
    test: 'test("second", () => assert.equal(second([1, 2]), 2));',
  },
};

const worker = (region: (typeof REGIONS)[number], taskId = `add-${region}`) => ({
  name: `worker ${taskId}`,
  match: { system: "You are a worker", user: `## Task: ${taskId}\n` },
  turns: [
    {
      toolCalls: [
        {
          name: "edit",
          arguments: {
            path: "src/list.ts",
            edits: [
              { oldText: `// end region: ${region}`, newText: `${FNS[region].fn}\n// end region: ${region}` },
            ],
          },
        },
        {
          name: "write",
          arguments: {
            path: `test/add-${region}.test.ts`,
            content: `import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { ${region} } from "../src/list.ts";\n${FNS[region].test}\n`,
          },
        },
      ],
    },
    { toolCalls: [{ name: "bash", arguments: { command: "node --test" } }] },
    {
      content: `Done.\n\`\`\`json\n${JSON.stringify({ status: "complete", summary: `added ${region}()`, filesChanged: ["src/list.ts"], concerns: [], suggestions: [] })}\n\`\`\``,
    },
  ],
});

/** The sim-llm script: a planner that plans `count` tasks (2 or 3) once, then nothing more. */
export function listScript(count: 2 | 3 = 2) {
  const regions = REGIONS.slice(0, count);
  return {
    model: "sim-list",
    conversations: [
      {
        name: "planner",
        match: { system: "You are the root planner" },
        turns: [
          {
            content: JSON.stringify({
              scratchpad: "independent helpers",
              tasks: regions.map((r, i) => ({
                id: `add-${r}`,
                description: `Add ${r}()`,
                scope: [`test/add-${r}.test.ts`],
                acceptance: "tests pass",
                priority: 3 + i,
              })),
            }),
          },
          { content: JSON.stringify({ scratchpad: "done", tasks: [] }) },
        ],
      },
      ...regions.map((r) => worker(r)),
    ],
  };
}

/** The request prompt that makes the {@link clusterScript} planner plan one big (decomposed) task. */
export const DECOMPOSED_PROMPT = "Add all list helpers in one task";

/**
 * The 3-task script plus a second scenario selected by the request prompt ({@link DECOMPOSED_PROMPT}): the
 * planner plans ONE task with 4 scope files (so it goes to the subplanner), which splits it into three
 * subtasks `add-all-sub-1..3`, one per region.
 */
export function clusterScript() {
  const scope = ["src/list.ts", ...REGIONS.map((r) => `test/add-${r}.test.ts`)];
  const base = listScript(3);
  return {
    model: base.model,
    conversations: [
      {
        name: "planner (decomposed)",
        match: { system: "You are the root planner", user: DECOMPOSED_PROMPT },
        turns: [
          {
            content: JSON.stringify({
              scratchpad: "one big task",
              tasks: [
                {
                  id: "add-all",
                  description: "Add first(), last() and second()",
                  scope,
                  acceptance: "tests pass",
                  priority: 3,
                },
              ],
            }),
          },
          { content: JSON.stringify({ scratchpad: "done", tasks: [] }) },
        ],
      },
      {
        name: "subplanner",
        match: { system: "You are a subplanner" },
        turns: [
          {
            content: JSON.stringify({
              scratchpad: "one subtask per helper",
              tasks: REGIONS.map((r) => ({
                description: `Add ${r}()`,
                scope: [`test/add-${r}.test.ts`],
                acceptance: "tests pass",
              })),
            }),
          },
          { content: JSON.stringify({ scratchpad: "done", tasks: [] }) },
        ],
      },
      ...REGIONS.map((r, i) => worker(r, `add-all-sub-${i + 1}`)),
      ...base.conversations,
    ],
  };
}

/** Writes the script to `<dir>/script.json` and returns its path. */
export async function writeScript(dir: string, count: 2 | 3 | "cluster" = 2): Promise<string> {
  const path = join(dir, `script-${count}.json`);
  await writeFile(path, JSON.stringify(count === "cluster" ? clusterScript() : listScript(count)));
  return path;
}

/** Creates the target repository at `dir` (main with src/list.ts and one passing test). */
export function makeListRepo(dir: string): Promise<string> {
  return makeRepo(dir, {
    "package.json": JSON.stringify(
      { name: "list", type: "module", scripts: { test: "node --test" } },
      null,
      2,
    ),
    "src/list.ts": LIST_TS,
    "test/list.test.ts":
      'import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { helper0 } from "../src/list.ts";\ntest("helper0", () => assert.equal(helper0([1]), 1));\n',
  });
}

/** One event of a run as a test reads it off `longshot.event.<runId>.>`. */
export interface SeenEvent {
  type: string;
  ts: string;
  data: Record<string, unknown>;
}

/** Options of {@link runEvents}. */
export interface RunEventsOptions {
  /** Called with each event as it arrives. */
  onEvent?: (e: SeenEvent) => void;
  /** Rejects when `until` has not arrived after this long, ms (default: never). */
  timeoutMs?: number;
  /** What the timeout error adds after the events seen (e.g. {@link SimCluster.diagnose}). */
  diagnose?: () => Promise<string>;
}

/**
 * Subscribes to the events of `runId` (before anything is published: call it first, then publish the request),
 * and resolves with every event seen up to and including the first of type `until` (default `run.completed`).
 * @throws after `timeoutMs` an error listing the events seen and the `diagnose` output: a test that waits for
 *   a run says where the run stopped, not only that it timed out.
 */
export function runEvents(
  nc: NatsConnection,
  runId: string,
  until = "run.completed",
  opts: RunEventsOptions = {},
): Promise<SeenEvent[]> {
  const sub = nc.subscribe(`longshot.event.${runId}.>`);
  const seen: SeenEvent[] = [];
  let expired = false;
  const done = (async () => {
    for await (const m of sub) {
      const e = m.json<SeenEvent>();
      seen.push(e);
      opts.onEvent?.(e);
      if (e.type === until) break;
    }
    sub.unsubscribe();
    // Ended by the deadline, not by `until`: the timeout's rejection (with the diagnosis) is the answer.
    if (expired) return new Promise<never>(() => {});
    return seen;
  })();
  if (opts.timeoutMs === undefined) return done;
  const timeoutMs = opts.timeoutMs;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(async () => {
      expired = true;
      sub.unsubscribe();
      const events = seen.map((e) => `${e.ts} ${e.type} ${JSON.stringify(e.data).slice(0, 160)}`).join("\n");
      const more = opts.diagnose ? await opts.diagnose().catch((err: unknown) => String(err)) : "";
      reject(
        new Error(
          `run ${runId}: no ${until} within ${timeoutMs} ms. Events seen:\n${events || "(none)"}\n${more}`,
        ),
      );
    }, timeoutMs);
  });
  return Promise.race([done, timedOut]).finally(() => clearTimeout(timer));
}

/** What {@link startSimCluster} started; `stop()` ends all of it and removes the scratch dir. */
export interface SimCluster {
  dir: { path: string; cleanup(): Promise<void> };
  sim: SimLlmProcess;
  cluster: EmbeddedCluster;
  /** A NATS connection as the cluster's admin. */
  nc: NatsConnection;
  /** For a failure message: restarts per service and each service log's warnings and last lines. */
  diagnose(): Promise<string>;
  stop(): Promise<void>;
}

/** Restarts per service and process, and the tail of every log of `cluster` (see `logTails`). */
export async function clusterDiagnosis(cluster: EmbeddedCluster): Promise<string> {
  return [
    `restarts: ${JSON.stringify(cluster.restarts())}, nats restarts: ${JSON.stringify(cluster.natsRestarts())}`,
    await logTails(cluster.logDir),
  ].join("\n");
}

/**
 * A cluster test's setup: a scratch dir (`prefix`), sim-llm on `script` with API key `key`, an embedded cluster
 * whose model endpoint is that sim-llm (state under `<dir>/state`, `env` on top, `instances` per scaled service),
 * and an admin NATS connection to it. What started is stopped again when a later step fails.
 */
export async function startSimCluster(opts: {
  prefix: string;
  key: string;
  script: unknown;
  env?: Record<string, string>;
  instances?: number;
}): Promise<SimCluster> {
  const dir = await tempDir(opts.prefix);
  let sim: SimLlmProcess | undefined;
  try {
    const scriptPath = join(dir.path, "script.json");
    await writeFile(scriptPath, JSON.stringify(opts.script));
    sim = await startSimLlmProcess(scriptPath, opts.key);
    const cluster = await startEmbeddedCluster({
      stateDir: join(dir.path, "state"),
      ...(opts.instances ? { instances: opts.instances } : {}),
      env: {
        LLM_BASE_URL: sim.url,
        LLM_API_KEY: opts.key,
        LLM_MODEL: sim.model,
        LOG_LEVEL: "info",
        ...opts.env,
      },
    });
    const nc = await connect(cluster.client);
    const started = sim;
    return {
      dir,
      sim: started,
      cluster,
      nc,
      diagnose: () => clusterDiagnosis(cluster),
      async stop() {
        await nc.drain();
        await cluster.stop();
        await started.stop();
        await dir.cleanup();
      },
    };
  } catch (err) {
    await sim?.stop();
    await dir.cleanup();
    throw err;
  }
}

/** A `Bus` on `cluster` as its admin user, named `name` (for KV and streams the CLI does not show); close it after. */
export function adminBus(cluster: EmbeddedCluster, name: string): Promise<Bus> {
  return connectBus({
    servers: cluster.natsUrl,
    name,
    log: createLogger({ service: "test", level: "warn" }),
    user: cluster.client.user!,
    pass: cluster.client.pass!,
  });
}
