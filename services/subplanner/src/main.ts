import { hostname } from "node:os";
import { join } from "node:path";
import { envelopeDecoder, eventDecoder, instanceId, runService } from "@longshot/bus";
import { instanceStateDir, reasoningFor } from "@longshot/config";
import { Consumers, HandoffMessage, TaskMessage } from "@longshot/contracts";
import { chatClientFromConfig } from "@longshot/llm";
import { llmCallMetrics } from "@longshot/metrics";
import { createRepoReader } from "./adapters/repo.ts";
import type { MergeOutcome } from "./domain/decomposition.ts";
import { createSubplanner } from "./subplanner.ts";

const promptsDir = new URL("../../../prompts/", import.meta.url).pathname;

runService("subplanner", async ({ config, log, bus, metrics }) => {
  const llm = chatClientFromConfig(config, {
    observe: llmCallMetrics(metrics),
    reasoning: reasoningFor(config, "subplanner"),
  });
  const subplanner = createSubplanner({
    bus,
    log,
    llm,
    repo: createRepoReader(instanceStateDir(config)),
    systemPromptPath: join(promptsDir, "subplanner.md"),
    branchPrefix: config.GIT_BRANCH_PREFIX,
    toolRounds: config.PLANNER_TOOL_ROUNDS,
    instance: `subplanner:${instanceId(hostname(), config.LONGSHOT_INSTANCE)}`,
  });
  const resumed = await subplanner.resume();
  if (resumed) log.info({ resumed }, "resumed unfinished decompositions");
  const consumptions = await Promise.all([
    bus.consume(
      Consumers.subplanner,
      envelopeDecoder(TaskMessage),
      async (env, ctx) => {
        try {
          await subplanner.onParent(env.data);
        } catch (err) {
          // The last delivery answers for the parent, so the root planner is never left waiting on it.
          if (!ctx.lastDelivery) throw err;
          await subplanner.giveUp(
            env.data,
            `decomposition gave up after ${ctx.deliveryCount} deliveries: ${(err as Error).message}`,
          );
        }
      },
      { concurrency: 8 },
    ),
    bus.consume(
      Consumers.subplannerHandoffs,
      envelopeDecoder(HandoffMessage),
      (env) => subplanner.onHandoff(env.data),
      { concurrency: 8 },
    ),
    bus.consume(
      Consumers.subplannerMerges,
      eventDecoder(
        "merge.merged",
        "merge.conflict",
        "merge.skipped",
        "merge.failed",
        "merge.rejected",
        "merge.verified",
      ),
      async (env) => {
        // merge.verified is informational; a subtask the merge queue rejected did not land: it failed.
        if (env.type === "merge.verified") return;
        const d = env.data;
        const outcome = (
          env.type === "merge.rejected" ? "failed" : env.type.slice("merge.".length)
        ) as MergeOutcome;
        const detail = "files" in d ? d.files.join(", ") : "reason" in d ? d.reason : "";
        const parentId = "parentId" in d ? d.parentId : undefined;
        return subplanner.onMerge(env.runId, d.taskId, d.attempt, outcome, detail, parentId);
      },
      { concurrency: 8 },
    ),
  ]);
  return async () => {
    await Promise.all(consumptions.map((c) => c.stop()));
    subplanner.stop();
  };
});
