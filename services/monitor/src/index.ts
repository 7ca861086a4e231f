/**
 * @longshot/monitor — the fleet's figures and guards: a fold of the EVENTS and HANDOFFS streams (plus the LLM
 * gateway's usage records) exported as Prometheus metrics, stuck-task reports, empty-diff alerts and budget
 * cancellations. `src/main.ts` is the service entry.
 */
export {
  jszSamples,
  type NatsFamilies,
  readNatsMonitoring,
  varzSamples,
} from "./adapters/nats-monitoring.ts";
export * from "./domain/fleet.ts";
export { registerMonitorMetrics } from "./metrics.ts";
export { type Monitor, type MonitorOptions, startMonitor } from "./monitor.ts";
