import { join } from "node:path";
import { createScopeLeases, envelopeDecoder, runService } from "@longshot/bus";
import { instanceStateDir, llmEndpoints, reasoningFor } from "@longshot/config";
import { Consumers, TaskMessage } from "@longshot/contracts";
import { sandboxProviderFromConfig } from "@longshot/sandbox";
import { createAttemptHistory } from "./adapters/attempt-history.ts";
import { watchCancellations } from "./adapters/cancellations.ts";
import { createTokenIssuer } from "./adapters/gateway-tokens.ts";
import { watchStuckTasks } from "./adapters/stuck-tasks.ts";
import { createTranscripts } from "./adapters/transcripts.ts";
import { Scheduler } from "./domain/scheduler.ts";
import { createTaskHandler } from "./handlers/task.ts";
import { dispatcherMetrics } from "./metrics.ts";

runService("dispatcher", async ({ config, log, bus, metrics }) => {
  const endpoint = llmEndpoints(config)[0];
  if (!endpoint) throw new Error("no model endpoint configured: set LLM_BASE_URL or LLM_ENDPOINTS");
  // Refuses to start when the configured isolation cannot work here (e.g. no bubblewrap), saying what to do.
  const provider = await sandboxProviderFromConfig(config, "dispatcher", log);
  // Sandboxes a crashed predecessor left running are killed before their tasks are redelivered.
  const reaped = await provider.reap();
  if (reaped) log.warn({ reaped }, "reaped sandboxes left by a previous dispatcher");
  const scheduler = new Scheduler(config.MAX_WORKERS, config.SCOPE_POLICY);
  const tokens =
    config.LLM_GATEWAY_ADMIN_URL && config.GATEWAY_ADMIN_TOKEN
      ? createTokenIssuer(
          config.LLM_GATEWAY_ADMIN_URL,
          config.GATEWAY_ADMIN_TOKEN,
          config.WORKER_TOKEN_BUDGET,
          // A sandbox's token dies a little after the sandbox's deadline, even if its revocation fails.
          config.WORKER_TIMEOUT * 1000 + 5 * 60_000,
        )
      : undefined;
  const cancellations = await watchCancellations(bus, log);
  const stuck = watchStuckTasks(bus, log);
  const handler = createTaskHandler({
    cancellations,
    stuck,
    metrics: dispatcherMetrics(metrics, scheduler, config.MAX_WORKERS),
    leases: createScopeLeases(bus),
    transcripts: createTranscripts(join(instanceStateDir(config), "dispatcher", "transcripts"), (err) =>
      log.warn({ err }, "transcript line not written"),
    ),
    history: { store: createAttemptHistory(bus, log), harness: config.WORKER_HARNESS },
    ...(tokens ? { tokens } : {}),
    bus,
    provider,
    scheduler,
    timeoutMs: config.WORKER_TIMEOUT * 1000,
    llm: {
      baseUrl: endpoint.endpoint,
      model: config.LLM_MODEL,
      maxTokens: config.LLM_MAX_TOKENS,
      ...(endpoint.apiKey ? { apiKey: endpoint.apiKey } : {}),
      ...(reasoningFor(config, "worker") !== undefined ? { reasoning: reasoningFor(config, "worker")! } : {}),
    },
  });
  // Pull ahead of the free slots so a priority-1 task that arrives while every slot is busy is already
  // waiting when one frees (held with working() heartbeats), instead of queueing behind older tasks.
  const prefetch = config.MAX_WORKERS + Math.min(64, config.MAX_WORKERS * 2);
  const consumption = await bus.consume(Consumers.dispatcher, envelopeDecoder(TaskMessage), handler, {
    concurrency: prefetch,
  });
  log.info(
    {
      gatewayTokens: !!tokens,
      maxWorkers: config.MAX_WORKERS,
      scopePolicy: config.SCOPE_POLICY,
      prefetch,
      provider: provider.name,
      isolation: provider.capabilities.isolation,
      harness: config.WORKER_HARNESS,
    },
    "dispatching",
  );
  return async () => {
    await consumption.stop();
    cancellations.stop();
    stuck.stop();
  };
});
