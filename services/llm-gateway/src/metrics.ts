import { Counter, collectDefaultMetrics, exponentialBuckets, Gauge, Histogram, Registry } from "prom-client";
import type { BreakerState } from "./domain/breaker.ts";

/** Every circuit breaker state, the values of the `state` label of `llm_gateway_circuit_breaker_state`. */
export const BREAKER_STATES: readonly BreakerState[] = ["closed", "half_open", "open"];

/** The gateway's Prometheus metrics (one fresh registry per gateway; names documented in the README). */
export interface GatewayMetrics {
  registry: Registry;
  requests: Counter<"upstream" | "status">;
  responses: Counter<"status" | "stream">;
  duration: Histogram<"upstream" | "stream">;
  ttft: Histogram<"upstream">;
  overhead: Histogram;
  retries: Counter<"upstream" | "reason">;
  retriesExhausted: Counter;
  breakerState: Gauge<"upstream" | "state">;
  breakerTransitions: Counter<"upstream" | "to">;
  upstreamHealthy: Gauge<"upstream">;
  active: Gauge<"upstream">;
  queueDepth: Gauge;
  rejected: Counter<"reason">;
  decisions: Counter<"policy" | "reason">;
  tokens: Counter<"model" | "role" | "type">;
  cost: Counter<"model" | "role">;
  budgetRejections: Counter<"scope">;
}

/**
 * Creates the metrics on a new registry. Every series carries `service="llm-gateway"`; Node's default metrics
 * keep their standard names (`process_cpu_seconds_total`, `nodejs_eventloop_lag_seconds`, …). No metric counts
 * what another already counts: cache hits are `llm_gateway_policy_decisions_total{reason="cache_hit"}`, and the
 * token types of `llm_gateway_tokens_total` partition the total (uncached prompt + cached prompt + completion).
 * `collect` hooks read live gauges (queue depth, breaker states, active requests) at scrape time through
 * `sample`.
 */
export function createMetrics(sample: { queueDepth(): number; refresh(): void }): GatewayMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service: "llm-gateway" });
  collectDefaultMetrics({ register: registry });
  const r = [registry];
  const seconds = exponentialBuckets(0.001, 2, 18); // 1 ms … 131 s
  return {
    registry,
    requests: new Counter({
      name: "llm_gateway_upstream_requests_total",
      help: "Attempts sent to upstreams, by upstream and HTTP status (error = connection error or timeout).",
      labelNames: ["upstream", "status"] as const,
      registers: r,
    }),
    responses: new Counter({
      name: "llm_gateway_requests_total",
      help: "Client requests answered, by final HTTP status and stream flag.",
      labelNames: ["status", "stream"] as const,
      registers: r,
    }),
    duration: new Histogram({
      name: "llm_gateway_request_duration_seconds",
      help: "Client request duration until the last byte, by the upstream that served it.",
      labelNames: ["upstream", "stream"] as const,
      buckets: seconds,
      registers: r,
    }),
    ttft: new Histogram({
      name: "llm_gateway_ttft_seconds",
      help: "Time from the client request to the first response byte sent back (streams: first token).",
      labelNames: ["upstream"] as const,
      buckets: seconds,
      registers: r,
    }),
    overhead: new Histogram({
      name: "llm_gateway_overhead_seconds",
      help: "Time spent in the gateway before the first upstream attempt was sent (parse, auth, queue, route).",
      buckets: exponentialBuckets(0.0001, 2, 16),
      registers: r,
    }),
    retries: new Counter({
      name: "llm_gateway_retries_total",
      help: "Retried attempts, by the upstream that failed and the reason (status code, connect, timeout).",
      labelNames: ["upstream", "reason"] as const,
      registers: r,
    }),
    retriesExhausted: new Counter({
      name: "llm_gateway_retries_exhausted_total",
      help: "Requests that failed after every retry.",
      registers: r,
    }),
    breakerState: new Gauge({
      name: "llm_gateway_circuit_breaker_state",
      help: "Circuit breaker state per upstream: 1 for the state it is in (closed, half_open, open), 0 for the others.",
      labelNames: ["upstream", "state"] as const,
      registers: r,
      collect() {
        sample.refresh();
      },
    }),
    breakerTransitions: new Counter({
      name: "llm_gateway_circuit_breaker_transitions_total",
      help: "Circuit breaker state changes per upstream, by new state.",
      labelNames: ["upstream", "to"] as const,
      registers: r,
    }),
    upstreamHealthy: new Gauge({
      name: "llm_gateway_upstream_healthy",
      help: "1 when the upstream passes active health checks, else 0.",
      labelNames: ["upstream"] as const,
      registers: r,
    }),
    active: new Gauge({
      name: "llm_gateway_active_requests",
      help: "Requests in flight per upstream.",
      labelNames: ["upstream"] as const,
      registers: r,
      collect() {
        sample.refresh(); // read from the upstreams at scrape time, not updated per request
      },
    }),
    queueDepth: new Gauge({
      name: "llm_gateway_queue_depth",
      help: "Requests waiting for an admission slot.",
      registers: r,
      collect() {
        this.set(sample.queueDepth());
      },
    }),
    rejected: new Counter({
      name: "llm_gateway_rejected_total",
      help: "Requests refused before routing, by reason (queue_full, queue_timeout, no_upstream, unauthorized).",
      labelNames: ["reason"] as const,
      registers: r,
    }),
    decisions: new Counter({
      name: "llm_gateway_policy_decisions_total",
      help: "Routing decisions by policy and reason (affinity, cache_hit, cache_miss, load_imbalance, ...).",
      labelNames: ["policy", "reason"] as const,
      registers: r,
    }),
    tokens: new Counter({
      name: "llm_gateway_tokens_total",
      help: "Tokens reported by upstream usage, by model, role and type: uncached_prompt + cached_prompt = prompt tokens, plus completion; the types sum to the total.",
      labelNames: ["model", "role", "type"] as const,
      registers: r,
    }),
    cost: new Counter({
      name: "llm_gateway_cost_dollars_total",
      help: "Cost in US dollars (GATEWAY_PRICES are dollars per million tokens), by model and role.",
      labelNames: ["model", "role"] as const,
      registers: r,
    }),
    budgetRejections: new Counter({
      name: "llm_gateway_budget_rejections_total",
      help: "Requests refused because a task or run token budget was used up, by scope.",
      labelNames: ["scope"] as const,
      registers: r,
    }),
  };
}

/** Sets the breaker gauge of `upstream` to `state`: 1 on that state's series, 0 on the others. */
export function setBreakerState(m: GatewayMetrics, upstream: string, state: BreakerState): void {
  for (const s of BREAKER_STATES) m.breakerState.set({ upstream, state: s }, s === state ? 1 : 0);
}
