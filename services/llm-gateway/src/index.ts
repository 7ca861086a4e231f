/**
 * @longshot/llm-gateway — one OpenAI-compatible endpoint in front of many model replicas: cache-aware routing
 * with session affinity, retries, circuit breakers, health checks, back-pressure, token budgets, accounting and
 * Prometheus metrics. `startGateway()` runs it in-process; `src/main.ts` is the service entry.
 */
export { type GatewayEnv, GatewayEnv as GatewayEnvSchema, gatewayOptionsFromEnv } from "./config.ts";
export { type Admission, type AdmissionOptions, AdmissionQueue } from "./domain/admission.ts";
export {
  admissionAnswer,
  budgetAnswer,
  type ErrorAnswer,
  exhaustedAnswer,
  NO_UPSTREAM_ANSWER,
  unauthorizedAnswer,
} from "./domain/answers.ts";
export { type BackoffOptions, backoffDelay, isRetryableStatus } from "./domain/backoff.ts";
export {
  type BreakerOptions,
  type BreakerOutcome,
  type BreakerState,
  CircuitBreaker,
} from "./domain/breaker.ts";
export {
  addRunUsage,
  type BudgetRefusal,
  costOf,
  type Grant,
  hashToken,
  Ledger,
  type ModelPrice,
  type PriceTable,
  type Reservation,
  type RunUsage,
  requestGrant,
  type TokenUsage,
  type UsageTotals,
} from "./domain/ledger.ts";
export {
  type ModelCatalog,
  type ModelObject,
  modelCatalog,
  modelList,
  modelObject,
} from "./domain/models.ts";
export {
  type CacheAwareOptions,
  type Candidate,
  cacheAwarePolicy,
  createPolicy,
  type Decision,
  type DecisionReason,
  leastLoaded,
  leastOutstandingPolicy,
  POLICY_NAMES,
  type PolicyName,
  type RouteInput,
  type RoutingPolicy,
  roundRobinPolicy,
  routeInput,
  type SessionAffinityOptions,
  sessionAffinityPolicy,
} from "./domain/policy.ts";
export { type PrefixMatch, PrefixTree, type PrefixTreeOptions } from "./domain/prefix-tree.ts";
export { type ChatBodyView, promptKey, upstreamBody, viewChatBody } from "./domain/prompt.ts";
export { SseUsageTap, type UsageCounts, usageCounts, usageFromBody, type WireUsage } from "./domain/sse.ts";
export {
  type Gateway,
  type GatewayOptions,
  type HealthCheckOptions,
  OVERHEAD_HEADER,
  RUN_ID_HEADER,
  startGateway,
  TASK_ID_HEADER,
  UPSTREAM_HEADER,
  type UpstreamAdmin,
} from "./gateway.ts";
export { type LedgerStore, natsLedgerStore } from "./store.ts";
export { type UpstreamConfig, UpstreamError, type UpstreamInfo, type UpstreamMode } from "./upstreams.ts";
