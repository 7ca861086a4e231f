import { hostname } from "node:os";
import { join } from "node:path";
import {
  createScopeLeases,
  envelopeDecoder,
  eventDecoder,
  instanceId,
  jsonDecoder,
  runService,
} from "@longshot/bus";
import { instanceStateDir, reasoningFor } from "@longshot/config";
import { CancelRequest, Consumers, HandoffMessage } from "@longshot/contracts";
import { createRepoReader } from "@longshot/git";
import { chatClientFromConfig } from "@longshot/llm";
import { createRequestHandler, decodeRequest } from "./handlers/request.ts";
import { plannerMetrics } from "./metrics.ts";
import { createPlanner } from "./planner.ts";

const promptsDir = new URL("../../../prompts/", import.meta.url).pathname;

runService("planner", async ({ config, log, bus, metrics }) => {
  const m = plannerMetrics(metrics);
  const llm = chatClientFromConfig(config, {
    observe: m.llmCall,
    reasoning: reasoningFor(config, "planner"),
  });
  const planner = createPlanner({
    bus,
    log,
    llm,
    repo: createRepoReader(join(instanceStateDir(config), "planner")),
    systemPromptPath: join(promptsDir, "root-planner.md"),
    policy: {
      branchPrefix: config.GIT_BRANCH_PREFIX,
      fallbackModel: config.LLM_MODEL_FALLBACK,
      maxConflictFixes: config.MAX_CONFLICT_FIX_TASKS,
      finalizationMaxAttempts: config.FINALIZATION_MAX_ATTEMPTS,
      finalizationTimeoutMs: config.FINALIZATION_SWEEP_TIMEOUT_MS,
    },
    replanAfter: config.REPLAN_AFTER_HANDOFFS,
    maxIterations: config.PLANNER_MAX_ITERATIONS,
    contextTokens: config.PLANNER_CONTEXT_TOKENS,
    toolRounds: config.PLANNER_TOOL_ROUNDS,
    metrics: m,
    leases: createScopeLeases(bus),
    instance: `planner:${instanceId(hostname(), config.LONGSHOT_INSTANCE)}`,
  });
  const resumed = await planner.resume();
  if (resumed) log.info({ resumed }, "resumed unfinished runs");
  const onRequest = createRequestHandler({
    bus,
    planner,
    defaultBaseBranch: config.GIT_MAIN_BRANCH,
    defaultMaxWorkers: config.MAX_WORKERS,
  });
  const consumptions = await Promise.all([
    bus.consume(Consumers.plannerRequests, decodeRequest, onRequest, { concurrency: 4 }),
    bus.consume(Consumers.plannerCancels, jsonDecoder(CancelRequest), async (req) => {
      await planner.onCancel(req);
    }),
    bus.consume(
      Consumers.plannerHandoffs,
      envelopeDecoder(HandoffMessage),
      (env) => planner.onHandoff(env.data),
      {
        concurrency: 8,
      },
    ),
    bus.consume(
      Consumers.plannerMerges,
      eventDecoder(
        "merge.merged",
        "merge.conflict",
        "merge.skipped",
        "merge.failed",
        "merge.rejected",
        "merge.verified",
      ),
      async (env) => {
        // merge.verified is informational: the landing (merge.merged) or rejection decides.
        if (env.type === "merge.verified") return;
        const d = env.data;
        const outcome = env.type.slice("merge.".length) as
          | "merged"
          | "conflict"
          | "skipped"
          | "failed"
          | "rejected";
        const detail = "files" in d ? d.files.join(", ") : "reason" in d ? d.reason : "";
        await planner.onMerge(env.runId, {
          taskId: d.taskId,
          attempt: d.attempt,
          outcome,
          detail,
          ...("files" in d ? { files: d.files } : {}),
        });
      },
      { concurrency: 8 },
    ),
    bus.consume(Consumers.plannerHealth, eventDecoder("health.swept"), (env) =>
      planner.onSweep(env.runId, env.data),
    ),
    bus.consume(Consumers.plannerFixes, eventDecoder("fix.requested"), (env) =>
      planner.onFixRequest(env.runId, env.data),
    ),
  ]);
  return async () => {
    await Promise.all(consumptions.map((c) => c.stop()));
    planner.stop();
  };
});
