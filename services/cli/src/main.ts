#!/usr/bin/env node
import { randomUUID } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connectBus } from "@longshot/bus";
import { loadConfig } from "@longshot/config";
import { newId, type RunRequest, Subjects } from "@longshot/contracts";
import { createLogger } from "@longshot/log";
import { Command, InvalidArgumentError } from "commander";
import { type EmbeddedCluster, startEmbeddedCluster } from "./cluster.ts";
import { DEMO_REQUEST, DEMO_SCRIPT, prepareDemoRepo, startSimLlmProcess } from "./demo.ts";
import { followRun, formatLlmUsage, formatSummary, readLlmUsage } from "./follow.ts";

process.title = "longshot-cli";
const out = (line: string) => process.stdout.write(`${line}\n`);
const err = (line: string) => process.stderr.write(`${line}\n`);

/** Model/limit variables passed through to an embedded cluster's services. */
const PASSTHROUGH =
  /^(LLM_|MAX_WORKERS$|WORKER_TIMEOUT$|MERGE_STRATEGY$|GIT_|SANDBOX_|SWEEP_|LOG_LEVEL$|PLANNER_|REPLAN_)/;

interface RunOptions {
  /** Extra env for the embedded cluster (overrides the caller's environment). */
  env?: Record<string, string>;
  /** Where the embedded cluster keeps its state and logs. */
  stateDir?: string;
}

/**
 * Submits `req` and follows it to the end. Uses the cluster at NATS_URL when set, else starts an embedded
 * one and tears it down afterwards. Returns the process exit code: 0 green, 1 red/cancelled, 2 rejected.
 */
async function submit(req: RunRequest, opts: RunOptions = {}): Promise<number> {
  const config = loadConfig({ ...process.env, ...opts.env });
  const external = process.env.NATS_URL;
  let cluster: EmbeddedCluster | undefined;
  const log = createLogger({ service: "cli", level: "warn" });
  let onSignal: (() => void) | undefined;
  try {
    if (!external) {
      const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), "longshot-")));
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries({ ...process.env, ...opts.env }))
        if (PASSTHROUGH.test(k) && v !== undefined) env[k] = v;
      cluster = await startEmbeddedCluster({ stateDir, env, notify: (l) => err(`cluster: ${l}`) });
      out(
        `embedded cluster: nats ${cluster.natsUrl}, services ${Object.entries(cluster.pids())
          .map(([s, p]) => `longshot-${s}(${p})`)
          .join(" ")}`,
      );
      out(`logs: ${cluster.logDir}`);
      const c = cluster;
      onSignal = () => {
        err("interrupted: stopping the embedded cluster");
        void c.stop().then(() => process.exit(130));
      };
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
    }
    const bus = await connectBus({ servers: external ?? cluster!.natsUrl, name: "longshot-cli", log });
    try {
      await bus.ensureTopology();
      const runId = req.runId ?? newId("run");
      const outcome = followRun(bus, runId, out);
      await bus.js.publish(Subjects.request, JSON.stringify({ ...req, runId }));
      const result = await outcome;
      if (result.kind === "rejected") {
        err(
          `request rejected:\n${result.errors.map((e) => `  - ${e.path || "(request)"}: ${e.message}`).join("\n")}`,
        );
        return 2;
      }
      out(formatSummary(runId, result.summary));
      const usage = await readLlmUsage(bus, runId);
      if (usage) out(formatLlmUsage(usage));
      return result.summary.status === "green" ? 0 : 1;
    } finally {
      await bus.close();
    }
  } finally {
    if (onSignal) {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    await cluster?.stop();
    void config;
  }
}

const positiveInt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
};

const program = new Command()
  .name("longshot")
  .description("Massively parallel autonomous coding: one request in, merged green commits out.")
  .argument("[request]", "what to build, in natural language")
  .option("-r, --repo <path|url>", "target git repository (local path or URL)")
  .option("-b, --base <branch>", "base branch to build on (default GIT_MAIN_BRANCH or main)")
  .option("-w, --max-workers <n>", "parallel sandboxes for this run", positiveInt)
  .option("--run-id <id>", "run id (default: generated)")
  .action(
    async (
      request: string | undefined,
      o: { repo?: string; base?: string; maxWorkers?: number; runId?: string },
    ) => {
      if (!request) {
        program.help();
        return;
      }
      if (!o.repo) program.error("error: --repo <path|url> is required");
      const repo = /^[a-z]+:\/\/|^git@/.test(o.repo!) ? o.repo! : resolve(o.repo!);
      process.exitCode = await submit({
        prompt: request,
        repo,
        ...(o.base ? { baseBranch: o.base } : {}),
        ...(o.maxWorkers ? { maxWorkers: o.maxWorkers } : {}),
        ...(o.runId ? { runId: o.runId } : {}),
      });
    },
  );

/** The demo's LLM_MODEL_FALLBACK: the model retries of failed or blocked tasks run on. */
const DEMO_FALLBACK_MODEL = "sim-fallback";

program
  .command("demo")
  .description("build the example todo API with the offline model (sim-llm) on an embedded cluster")
  .action(async () => {
    const { demoDir, repo } = await prepareDemoRepo();
    out(`demo repository: ${repo}`);
    const apiKey = `sim-${randomUUID()}`;
    const sim = await startSimLlmProcess(DEMO_SCRIPT, apiKey);
    out(`model: sim-llm at ${sim.url} (script ${DEMO_SCRIPT})`);
    try {
      process.exitCode = await submit(
        { prompt: DEMO_REQUEST, repo },
        {
          env: {
            LLM_BASE_URL: sim.url,
            LLM_API_KEY: apiKey,
            LLM_MODEL: sim.model,
            // Retries of failed/blocked tasks go to a second model (sim-llm answers any model name).
            LLM_MODEL_FALLBACK: DEMO_FALLBACK_MODEL,
          },
          stateDir: join(demoDir, "state"),
        },
      );
    } finally {
      await sim.stop();
    }
  });

program
  .command("up")
  .description("run an embedded cluster in the foreground and print its NATS URL (Ctrl-C stops it)")
  .action(async () => {
    loadConfig();
    const stateDir = await mkdtemp(join(tmpdir(), "longshot-up-"));
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (PASSTHROUGH.test(k) && v !== undefined) env[k] = v;
    const cluster = await startEmbeddedCluster({ stateDir, env, notify: (l) => err(`cluster: ${l}`) });
    out(`NATS_URL=${cluster.natsUrl}`);
    out(
      `services: ${Object.entries(cluster.pids())
        .map(([s, p]) => `longshot-${s}(${p})`)
        .join(" ")}`,
    );
    out(`logs: ${cluster.logDir}`);
    out(
      `start a run: nats --server ${cluster.natsUrl} pub longshot.request '{"prompt":"…","repo":"/path/to/repo"}'`,
    );
    await new Promise<void>((r) => {
      process.once("SIGINT", r);
      process.once("SIGTERM", r);
    });
    await cluster.stop();
  });

program.parseAsync().catch((e: unknown) => {
  err(`longshot: ${(e as Error).message}`);
  process.exit(1);
});
