import { envelopeDecoder, runService } from "@longshot/bus";
import { stateDir } from "@longshot/config";
import { Buckets, Consumers, HandoffMessage } from "@longshot/contracts";
import { createMergeRunner } from "./adapters/merge-runner.ts";
import type { MergedRecordStore } from "./adapters/merged-records.ts";
import { createHandoffHandler } from "./handlers/handoff.ts";

runService("merger", async ({ config, log, bus }) => {
  const kv = await bus.kv(Buckets.merged);
  const records: MergedRecordStore = {
    get: async (key) => {
      const e = await kv.get(key);
      return e && e.operation === "PUT" ? e.string() : undefined;
    },
    put: async (key, sha) => {
      await kv.put(key, sha);
    },
  };
  const runner = createMergeRunner({
    stateDir: stateDir(config),
    strategy: config.MERGE_STRATEGY,
    log,
    records,
  });
  // Pull every waiting handoff so the in-process queue can order them by priority.
  const consumption = await bus.consume(
    Consumers.merger,
    envelopeDecoder(HandoffMessage),
    createHandoffHandler({ bus, runner }),
    {
      concurrency: 256,
    },
  );
  return () => consumption.stop();
});
