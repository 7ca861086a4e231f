import { readFile } from "node:fs/promises";
import { eventDecoder, runService } from "@longshot/bus";
import { llmEndpoints, reasoningFor } from "@longshot/config";
import { Consumers, runIdOfEventSubject, Subjects } from "@longshot/contracts";
import { chatClientFromConfig } from "@longshot/llm";
import { sandboxProviderFromConfig } from "@longshot/sandbox";
import { createHeadReader, createSweeper } from "./adapters/sweep.ts";
import { reconcilerMetrics } from "./metrics.ts";
import { createReconciler } from "./reconciler.ts";

const promptPath = new URL("../../../prompts/reconciler.md", import.meta.url).pathname;

runService("reconciler", async ({ config, log, bus, metrics }) => {
  const m = reconcilerMetrics(metrics);
  const overrides = {
    install: config.SWEEP_INSTALL_CMD,
    build: config.SWEEP_BUILD_CMD,
    typecheck: config.SWEEP_TYPECHECK_CMD,
    test: config.SWEEP_TEST_CMD,
  };
  const endpoints = llmEndpoints(config);
  // Checks of agent-written code run in sandboxes of the configured provider, never on this host.
  const provider = await sandboxProviderFromConfig(config, "reconciler", log);
  const reaped = await provider.reap();
  if (reaped) log.warn({ reaped }, "reaped sweep sandboxes left by a previous reconciler");
  const reconciler = createReconciler({
    bus,
    log,
    sweep: m.sweeper(
      createSweeper({
        provider,
        overrides,
        timeoutMs: config.SWEEP_TIMEOUT_MS,
        installNetwork: config.SWEEP_INSTALL_NETWORK === "on",
      }),
    ),
    headOf: createHeadReader(provider),
    ...(endpoints.length
      ? {
          llm: {
            client: chatClientFromConfig(config, {
              observe: m.llmCall,
              reasoning: reasoningFor(config, "reconciler"),
            }),
            systemPrompt: await readFile(promptPath, "utf8"),
          },
        }
      : {}),
    timer: {
      redIntervalMs: config.RECONCILER_RED_INTERVAL_MS,
      greenIntervalMs: config.RECONCILER_GREEN_INTERVAL_MS,
      greenStreak: config.RECONCILER_GREEN_STREAK,
    },
    refileAfterMs: config.RECONCILER_REFILE_AFTER_MS,
  });
  // Finished runs need no more timer sweeps (a plain subscription: a missed one only costs extra sweeps).
  const completed = bus.nc.subscribe(Subjects.eventsOfType("run.completed"), {
    callback: (_err, msg) => {
      const runId = runIdOfEventSubject(msg.subject);
      if (runId) reconciler.forget(runId);
    },
  });
  const consumptions = await Promise.all([
    bus.consume(
      Consumers.reconcilerMerges,
      eventDecoder("merge.merged"),
      async (env) => {
        // A landing the merge queue verified is watched by the timer; any other one is swept now.
        if (env.data.verified)
          reconciler.verifiedLanding(env.runId, env.data.repo, env.data.baseBranch, env.data.sha);
        else await reconciler.request(env.runId, env.data.repo, env.data.baseBranch, undefined);
      },
      {
        concurrency: 16,
      },
    ),
    bus.consume(
      Consumers.reconcilerSweeps,
      eventDecoder("sweep.requested"),
      (env) => reconciler.request(env.runId, env.data.repo, env.data.baseBranch, env.data.requestId),
      { concurrency: 16 },
    ),
  ]);
  return async () => {
    completed.unsubscribe();
    reconciler.stop();
    await Promise.all(consumptions.map((c) => c.stop()));
  };
});
