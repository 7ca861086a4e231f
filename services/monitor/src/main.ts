import { runService } from "@longshot/bus";
import { readNatsMonitoring } from "./adapters/nats-monitoring.ts";
import { Fleet } from "./domain/fleet.ts";
import { registerMonitorMetrics } from "./metrics.ts";
import { startMonitor } from "./monitor.ts";

runService("monitor", async ({ config, log, bus, metrics }) => {
  const fleet = new Fleet();
  const natsUrls = (config.NATS_MONITOR_URL ?? "")
    .split(",")
    .map((u) => u.trim())
    .filter(Boolean);
  const monitor = await startMonitor({
    bus,
    log,
    fleet,
    stuckAfterMs: config.STUCK_AFTER_MS,
    stuckPolicy: config.STUCK_POLICY,
    budgets: { tokens: config.RUN_TOKEN_BUDGET, cost: config.RUN_COST_BUDGET },
  });
  registerMonitorMetrics(metrics, {
    fleet,
    ready: monitor.isReady,
    stuckAfterMs: config.STUCK_AFTER_MS,
    ...(natsUrls.length ? { nats: () => readNatsMonitoring(natsUrls) } : {}),
  });
  log.info(
    {
      stuckAfterMs: config.STUCK_AFTER_MS,
      stuckPolicy: config.STUCK_POLICY,
      runTokenBudget: config.RUN_TOKEN_BUDGET,
      runCostBudget: config.RUN_COST_BUDGET,
      natsMonitoring: natsUrls,
    },
    "monitoring",
  );
  return () => monitor.stop();
});
