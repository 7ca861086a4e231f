import { join } from "node:path";
import { envelopeDecoder, runService } from "@longshot/bus";
import { llmEndpoints, stateDir } from "@longshot/config";
import { Consumers, TaskMessage } from "@longshot/contracts";
import { createLocalSandboxProvider, reapOrphanSandboxes } from "@longshot/sandbox";
import { createTokenIssuer } from "./adapters/gateway-tokens.ts";
import { Scheduler } from "./domain/scheduler.ts";
import { createTaskHandler } from "./handlers/task.ts";

const root = new URL("../../../", import.meta.url).pathname;

runService("dispatcher", async ({ config, log, bus }) => {
  const endpoint = llmEndpoints(config)[0];
  if (!endpoint) throw new Error("no model endpoint configured: set LLM_BASE_URL or LLM_ENDPOINTS");
  // Sandboxes a crashed predecessor left running are killed before their tasks are redelivered.
  const registryDir = join(stateDir(config), "dispatcher", "sandboxes");
  const reaped = await reapOrphanSandboxes(registryDir);
  if (reaped) log.warn({ reaped }, "reaped sandboxes left by a previous dispatcher");
  const provider = createLocalSandboxProvider({
    registryDir,
    workerEntry: `${root}services/worker/src/main.ts`,
    systemPromptPath: `${root}prompts/worker.md`,
    log,
  });
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
  const handler = createTaskHandler({
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
    },
    "dispatching",
  );
  return () => consumption.stop();
});
