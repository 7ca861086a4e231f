import { readFile } from "node:fs/promises";
import { eventDecoder, runService } from "@longshot/bus";
import { llmEndpoints } from "@longshot/config";
import { Consumers, runIdOfEventSubject, Subjects } from "@longshot/contracts";
import { chatClientFromConfig } from "@longshot/llm";
import { remoteHead, sweep } from "./adapters/sweep.ts";
import { createReconciler } from "./reconciler.ts";

const promptPath = new URL("../../../prompts/reconciler.md", import.meta.url).pathname;

runService("reconciler", async ({ config, log, bus }) => {
  const overrides = {
    install: config.SWEEP_INSTALL_CMD,
    build: config.SWEEP_BUILD_CMD,
    typecheck: config.SWEEP_TYPECHECK_CMD,
    test: config.SWEEP_TEST_CMD,
  };
  const endpoints = llmEndpoints(config);
  const reconciler = createReconciler({
    bus,
    log,
    sweep: (repo, baseBranch) => sweep(repo, baseBranch, overrides, config.SWEEP_TIMEOUT_MS),
    headOf: remoteHead,
    ...(endpoints.length
      ? {
          llm: {
            client: chatClientFromConfig(config),
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
      (env) => reconciler.request(env.runId, env.data.repo, env.data.baseBranch, undefined),
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
