#!/usr/bin/env node
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { ROOT } from "./cluster.ts";
import {
  attachRun,
  type CliContext,
  cancelRun,
  cliContext,
  clusterUp,
  createTopology,
  type Io,
  listRuns,
  resumeRun,
  type SubmitOptions,
  showHistory,
  showLogs,
  showStatus,
  submitRun,
} from "./commands.ts";
import { DEMO_REQUEST, DEMO_SCRIPT, prepareDemoRepo, startSimLlmProcess } from "./demo.ts";

process.title = "longshot-cli";
const io: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** `longshot --version`: the CLI package's version and the checkout's commit. */
function version(): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, "services/cli/package.json"), "utf8")) as {
    version: string;
  };
  let commit = "";
  try {
    commit = execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    // not a git checkout
  }
  return `longshot ${pkg.version}${commit ? ` (${commit})` : ""}, Node ${process.versions.node}`;
}

let current: CliContext | undefined;
let interrupted = false;
/**
 * SIGINT/SIGTERM: runs the current command's cleanups (stop the embedded cluster, close the dashboard, stop the
 * demo's model), newest first, then exits 130. A second signal exits at once.
 */
function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) process.exit(130);
  interrupted = true;
  const ctx = current;
  if (ctx && ctx.cleanups.length > 0) io.err(`${signal}: stopping`);
  void (async () => {
    for (const c of [...(ctx?.cleanups ?? [])].reverse()) await c().catch(() => {});
    process.exit(130);
  })();
}
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

/** The context of this invocation (global `--debug` applied). */
/** Set by `--observe` (run, `demo`, `up`): Prometheus beside the embedded cluster. */
let observeRequested = false;
const OBSERVE_HELP =
  "start Prometheus beside the embedded cluster, scraping every service; prints its URL and the Grafana import path";

function context(overrides?: Record<string, string>): CliContext {
  current = cliContext(io, {
    debug: program.opts<{ debug?: boolean }>().debug === true,
    ...(overrides ? { overrides } : {}),
  });
  if (observeRequested) current.observe = true;
  return current;
}

const positiveInt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
};
const nodeCount = (v: string) => {
  const n = positiveInt(v);
  if (n !== 1 && n !== 3) throw new InvalidArgumentError("1 or 3");
  return n;
};

/** The `--dashboard` display, loaded only when asked for (it pulls in the TUI library). */
async function dashboardOption(
  enabled: boolean | undefined,
): Promise<SubmitOptions["dashboard"] | undefined> {
  if (!enabled) return undefined;
  const { openDashboard } = await import("./dashboard.ts");
  return openDashboard;
}

const program = new Command()
  .name("longshot")
  // Options after a subcommand belong to it (`longshot up --nodes 3`, `longshot attach <run> --dashboard`): the
  // program has options of the same names for a run.
  .enablePositionalOptions()
  .description("Massively parallel autonomous coding: one request in, merged green commits out.")
  .version(version(), "-V, --version", "print the version")
  .option("--debug", "services log at debug level; the CLI's own log goes to stderr")
  .argument("[request]", "what to build, in natural language")
  .option("-r, --repo <path|url>", "target git repository (local path or URL)")
  .option("-b, --base <branch>", "base branch to build on (default GIT_MAIN_BRANCH or main)")
  .option("-w, --max-workers <n>", "parallel sandboxes for this run", positiveInt)
  .option("--run-id <id>", "run id (default: generated)")
  .option("--dashboard", "full-screen dashboard instead of progress lines")
  .option(
    "--reset",
    "first move the base branch back to where the last run of this repository started (the old tip is kept under refs/longshot/pre-reset/)",
  )
  .option("--nodes <n>", "nats-server nodes of a new embedded cluster (1, or 3 for R3 streams)", nodeCount)
  .option("--observe", OBSERVE_HELP)
  .action(
    async (
      request: string | undefined,
      o: {
        repo?: string;
        base?: string;
        maxWorkers?: number;
        runId?: string;
        dashboard?: boolean;
        reset?: boolean;
        nodes?: number;
        observe?: boolean;
      },
    ) => {
      observeRequested = o.observe === true;
      if (!request) {
        program.help();
        return;
      }
      if (!o.repo) program.error("error: --repo <path|url> is required");
      const repo = /^[a-z]+:\/\/|^git@/.test(o.repo!) ? o.repo! : resolve(o.repo!);
      const dashboard = await dashboardOption(o.dashboard);
      process.exitCode = await submitRun(
        context(),
        {
          prompt: request,
          repo,
          ...(o.base ? { baseBranch: o.base } : {}),
          ...(o.maxWorkers ? { maxWorkers: o.maxWorkers } : {}),
          ...(o.runId ? { runId: o.runId } : {}),
        },
        {
          ...(dashboard ? { dashboard } : {}),
          reset: o.reset === true,
          ...(o.nodes ? { nodes: o.nodes } : {}),
        },
      );
    },
  );

/** The demo's LLM_MODEL_FALLBACK: the model retries of failed or blocked tasks run on. */
const DEMO_FALLBACK_MODEL = "sim-fallback";

program
  .command("demo")
  .description("build the example todo API with the offline model (sim-llm) on an embedded cluster")
  .option("--dashboard", "full-screen dashboard instead of progress lines")
  .option("--observe", OBSERVE_HELP)
  .action(async (o: { dashboard?: boolean; observe?: boolean }) => {
    observeRequested = o.observe === true;
    const { demoDir, repo } = await prepareDemoRepo();
    io.out(`demo repository: ${repo}`);
    const apiKey = `sim-${randomUUID()}`;
    const sim = await startSimLlmProcess(DEMO_SCRIPT, apiKey);
    io.out(`model: sim-llm at ${sim.url} (script ${DEMO_SCRIPT})`);
    const ctx = context({
      LLM_BASE_URL: sim.url,
      LLM_API_KEY: apiKey,
      LLM_MODEL: sim.model,
      // Retries of failed/blocked tasks go to a second model (sim-llm answers any model name).
      LLM_MODEL_FALLBACK: DEMO_FALLBACK_MODEL,
      // The demo keeps its own store next to its repository.
      LONGSHOT_STATE_DIR: join(demoDir, "state"),
    });
    ctx.cleanups.push(() => sim.stop());
    const dashboard = await dashboardOption(o.dashboard);
    try {
      process.exitCode = await submitRun(ctx, { prompt: DEMO_REQUEST, repo }, dashboard ? { dashboard } : {});
    } finally {
      await sim.stop();
    }
  });

program
  .command("up")
  .description("run an embedded cluster in the foreground and print how to reach it (Ctrl-C stops it)")
  .option("--nodes <n>", "nats-server nodes (1, or 3: a cluster with R3 streams and KV)", nodeCount)
  .option("--observe", OBSERVE_HELP)
  .action(async (o: { nodes?: number; observe?: boolean }) => {
    observeRequested = o.observe === true;
    process.exitCode = await clusterUp(context(), o.nodes);
  });

program
  .command("topology")
  .description(
    "create every stream, consumer and KV bucket on NATS_URL as the admin user (compose's nats-init)",
  )
  .action(async () => {
    process.exitCode = await createTopology(context());
  });

program
  .command("runs")
  .description("list the runs: status, age, tasks, merged, tokens, cost")
  .action(async () => {
    process.exitCode = await listRuns(context());
  });

program
  .command("status")
  .description("one run: tasks by state, merge queue, health of its base branch, last events")
  .argument("<run>", "run id")
  .action(async (runId: string) => {
    process.exitCode = await showStatus(context(), runId);
  });

program
  .command("logs")
  .description("a run's events (with its workers' progress), or one task's")
  .argument("<run>", "run id")
  .option("-t, --task <id>", "only this task's events, then its attempts with their transcripts")
  .option("-f, --follow", "keep printing new events until the run ends")
  .action(async (runId: string, o: { task?: string; follow?: boolean }) => {
    process.exitCode = await showLogs(context(), runId, {
      ...(o.task ? { task: o.task } : {}),
      follow: o.follow === true,
    });
  });

program
  .command("history")
  .description(
    "every attempt of a run: model, harness, status, tool calls, diff, tokens, merge queue verdict; one task's in full with transcripts",
  )
  .argument("<run>", "run id")
  .option("-t, --task <id>", "this task's attempts in full, with their transcripts")
  .action(async (runId: string, o: { task?: string }) => {
    process.exitCode = await showHistory(context(), runId, o.task ? { task: o.task } : {});
  });

program
  .command("attach")
  .description("follow a run started elsewhere (another CLI, nats pub) until it ends")
  .argument("<run>", "run id")
  .option("--dashboard", "full-screen dashboard instead of progress lines")
  .action(async (runId: string, o: { dashboard?: boolean }) => {
    const dashboard = await dashboardOption(o.dashboard);
    process.exitCode = await attachRun(context(), runId, dashboard ? { dashboard } : {});
  });

program
  .command("resume")
  .description("bring the cluster back on the same store and continue a run until it ends")
  .argument("<run>", "run id")
  .option("--dashboard", "full-screen dashboard instead of progress lines")
  .action(async (runId: string, o: { dashboard?: boolean }) => {
    const dashboard = await dashboardOption(o.dashboard);
    process.exitCode = await resumeRun(context(), runId, dashboard ? { dashboard } : {});
  });

program
  .command("cancel")
  .description("stop a run: no more planning or dispatch, its sandboxes terminated, status cancelled")
  .argument("<run>", "run id")
  .option("--reason <text>", "why (kept in run.cancelled and the summary)", "cancelled from the CLI")
  .action(async (runId: string, o: { reason: string }) => {
    process.exitCode = await cancelRun(context(), runId, o.reason);
  });

program.parseAsync().then(
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    io.err(`longshot: ${(e as Error).message}`);
    process.exit(1);
  },
);
