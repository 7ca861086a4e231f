import { envelopeDecoder, runService } from "@longshot/bus";
import { instanceStateDir } from "@longshot/config";
import { Buckets, Consumers, HandoffMessage } from "@longshot/contracts";
import { sandboxProviderFromConfig } from "@longshot/sandbox";
import { createMergeQueue } from "./adapters/merge-queue.ts";
import type { MergedRecordStore } from "./adapters/merged-records.ts";
import { createHandoffHandler, createVerifiedPublisher } from "./handlers/handoff.ts";
import { mergerMetrics } from "./metrics.ts";

runService("merger", async ({ config, log, bus, metrics }) => {
  const m = mergerMetrics(metrics);
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
  // Candidates are verified in sandboxes of the configured provider (agent-written code never runs here).
  let verify: Parameters<typeof createMergeQueue>[0]["verify"];
  if (config.MERGE_VERIFY === "on") {
    const provider = await sandboxProviderFromConfig(config, "merger", log);
    const reaped = await provider.reap();
    if (reaped) log.warn({ reaped }, "reaped verification sandboxes left by a previous merger");
    verify = {
      provider,
      overrides: {
        install: config.SWEEP_INSTALL_CMD,
        build: config.SWEEP_BUILD_CMD,
        typecheck: config.SWEEP_TYPECHECK_CMD,
        test: config.SWEEP_TEST_CMD,
      },
      timeoutMs: config.MERGE_VERIFY_TIMEOUT_MS,
      installNetwork: config.SWEEP_INSTALL_NETWORK === "on",
    };
  } else {
    log.warn("MERGE_VERIFY=off: branches land without running the target's checks first");
  }
  const queue = m.queue(
    createMergeQueue({
      stateDir: instanceStateDir(config),
      strategy: config.MERGE_STRATEGY,
      log,
      records,
      verify,
      depth: config.MERGE_SPECULATION_DEPTH,
      onVerified: createVerifiedPublisher(bus, log),
    }),
  );
  // Pull every waiting handoff so the in-process queue can order them by priority.
  const consumption = await bus.consume(
    Consumers.merger,
    envelopeDecoder(HandoffMessage),
    m.handler(createHandoffHandler({ bus, queue })),
    {
      concurrency: 256,
    },
  );
  return () => consumption.stop();
});
