import { eventDecoder, RetryableError, runService } from "@longshot/bus";
import { Consumers } from "@longshot/contracts";
import { type SweepResult, sweep } from "./adapters/sweep.ts";
import { SweepCoalescer } from "./domain/coalesce.ts";

runService("reconciler", async ({ config, log, bus }) => {
  const overrides = {
    install: config.SWEEP_INSTALL_CMD,
    build: config.SWEEP_BUILD_CMD,
    typecheck: config.SWEEP_TYPECHECK_CMD,
    test: config.SWEEP_TEST_CMD,
  };
  // Key = run id; the repo and branch of the latest request for that run are used.
  const targets = new Map<string, { repo: string; baseBranch: string }>();
  let sweeps = 0;
  const published = new Map<string, Promise<void>>();
  const coalescer = new SweepCoalescer<SweepResult & { no: number }>(async (runId) => {
    const t = targets.get(runId)!;
    const no = ++sweeps;
    const result = await sweep(t.repo, t.baseBranch, overrides, config.SWEEP_TIMEOUT_MS);
    log.info(
      {
        runId,
        sha: result.sha,
        green: result.green,
        durationMs: result.durationMs,
        failing: result.checks.filter((c) => !c.ok).map((c) => c.name),
      },
      "swept",
    );
    return { ...result, no };
  });

  const request = async (runId: string, repo: string, baseBranch: string, requestId: string | undefined) => {
    targets.set(runId, { repo, baseBranch });
    let r: SweepResult & { no: number };
    try {
      r = await coalescer.request(runId);
    } catch (err) {
      throw new RetryableError(`sweep failed: ${(err as Error).message}`, { delayMs: 5000, cause: err });
    }
    const { no, ...result } = r;
    // Merge-triggered requests that joined the same sweep share one event; an explicit request id gets its
    // own. The id also makes JetStream drop a republish after a redelivery.
    const eventKey = `${runId}-${no}-${requestId ?? "merge"}`;
    let publishing = published.get(eventKey);
    if (!publishing) {
      publishing = bus
        .publishEvent(
          "health.swept",
          runId,
          { ...result, ...(requestId ? { requestId } : {}) },
          { id: `swept-${eventKey}` },
        )
        .then(() => undefined);
      published.set(eventKey, publishing);
      publishing.catch(() => published.delete(eventKey));
    }
    await publishing;
  };

  const consumptions = await Promise.all([
    bus.consume(
      Consumers.reconcilerMerges,
      eventDecoder("merge.merged"),
      (env) => request(env.runId, env.data.repo, env.data.baseBranch, undefined),
      { concurrency: 16 },
    ),
    bus.consume(
      Consumers.reconcilerSweeps,
      eventDecoder("sweep.requested"),
      (env) => request(env.runId, env.data.repo, env.data.baseBranch, env.data.requestId),
      { concurrency: 16 },
    ),
  ]);
  return async () => {
    await Promise.all(consumptions.map((c) => c.stop()));
  };
});
