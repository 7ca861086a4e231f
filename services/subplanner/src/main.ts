import { join } from "node:path";
import { envelopeDecoder, eventDecoder, runService } from "@longshot/bus";
import { stateDir } from "@longshot/config";
import { Consumers, HandoffMessage, TaskMessage } from "@longshot/contracts";
import { chatClientFromConfig } from "@longshot/llm";
import { createRepoReader } from "./adapters/repo.ts";
import type { MergeOutcome } from "./domain/decomposition.ts";
import { createSubplanner } from "./subplanner.ts";

const promptsDir = new URL("../../../prompts/", import.meta.url).pathname;

runService("subplanner", async ({ config, log, bus }) => {
  const llm = chatClientFromConfig(config);
  const subplanner = createSubplanner({
    bus,
    log,
    llm,
    repo: createRepoReader(stateDir(config)),
    systemPromptPath: join(promptsDir, "subplanner.md"),
    branchPrefix: config.GIT_BRANCH_PREFIX,
  });
  const resumed = await subplanner.resume();
  if (resumed) log.info({ resumed }, "resumed unfinished decompositions");
  const consumptions = await Promise.all([
    bus.consume(Consumers.subplanner, envelopeDecoder(TaskMessage), (env) => subplanner.onParent(env.data), {
      concurrency: 8,
    }),
    bus.consume(
      Consumers.subplannerHandoffs,
      envelopeDecoder(HandoffMessage),
      (env) => subplanner.onHandoff(env.data),
      { concurrency: 8 },
    ),
    bus.consume(
      Consumers.subplannerMerges,
      eventDecoder("merge.merged", "merge.conflict", "merge.skipped", "merge.failed"),
      (env) => {
        const d = env.data;
        const outcome = env.type.slice("merge.".length) as MergeOutcome;
        const detail = "files" in d ? d.files.join(", ") : "reason" in d ? d.reason : "";
        return subplanner.onMerge(env.runId, d.taskId, d.attempt, outcome, detail);
      },
      { concurrency: 8 },
    ),
  ]);
  return async () => {
    await Promise.all(consumptions.map((c) => c.stop()));
    subplanner.stop();
  };
});
