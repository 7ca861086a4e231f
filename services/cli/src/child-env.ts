/**
 * The environment of each process of an embedded cluster, built from an allowlist per service: a child gets
 * the variables it reads and nothing else. The provider keys (`LLM_API_KEY`, `LLM_ENDPOINTS`) reach only the
 * LLM gateway (the other services call the gateway with their own gateway token); NATS credentials are each
 * service's own; nats-server gets no variable of the caller at all (its config file says everything).
 */

/** The services an embedded cluster can run (the gateway included). */
export type ClusterService =
  | "planner"
  | "subplanner"
  | "dispatcher"
  | "merger"
  | "reconciler"
  | "llm-gateway"
  | "monitor";

/** Variables of the host every Node service needs to run at all (paths, locale, CA bundle, proxies). */
const SYSTEM = [
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "LANG",
  "LANGUAGE",
  "TZ",
  "TMPDIR",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
];
const SYSTEM_PREFIXES = ["LC_"];

/** Every service: logging, state, git identity and branch naming. */
const COMMON = [
  "LOG_LEVEL",
  "GIT_MAIN_BRANCH",
  "GIT_BRANCH_PREFIX",
  "GIT_COMMIT_NAME",
  "GIT_COMMIT_EMAIL",
  "NATS_REPLICAS",
  "METRICS_HOST",
  "METRICS_PORT",
];

/** The model settings a service that calls the model (through the gateway) reads; never a provider key. */
const MODEL = ["LLM_BASE_URL", "LLM_MODEL", "LLM_MODEL_FALLBACK", "LLM_MAX_TOKENS", "LLM_TIMEOUT_MS"];
const SANDBOX_PREFIXES = ["SANDBOX_", "MODAL_"];

/** Per service: exact names and name prefixes it may receive from the caller's configuration. */
const ALLOW: Record<ClusterService, { names: string[]; prefixes?: string[] }> = {
  planner: {
    names: [
      ...MODEL,
      "MAX_WORKERS",
      "PLANNER_MAX_ITERATIONS",
      "REPLAN_AFTER_HANDOFFS",
      "MAX_CONFLICT_FIX_TASKS",
      "FINALIZATION_MAX_ATTEMPTS",
      "FINALIZATION_SWEEP_TIMEOUT_MS",
    ],
  },
  subplanner: { names: MODEL },
  dispatcher: {
    names: [
      ...MODEL,
      "MAX_WORKERS",
      "WORKER_TIMEOUT",
      "WORKER_HARNESS",
      "WORKER_COMMAND",
      "WORKER_TOKEN_BUDGET",
      "SCOPE_POLICY",
      "GIT_TOKEN",
    ],
    prefixes: SANDBOX_PREFIXES,
  },
  // The merge queue verifies candidates with the reconciler's checks in sandboxes.
  merger: { names: ["GIT_TOKEN"], prefixes: ["MERGE_", "SWEEP_", ...SANDBOX_PREFIXES] },
  reconciler: { names: [...MODEL, "GIT_TOKEN"], prefixes: ["SWEEP_", "RECONCILER_", ...SANDBOX_PREFIXES] },
  "llm-gateway": {
    names: ["LLM_BASE_URL", "LLM_API_KEY", "LLM_ENDPOINTS", "LLM_MODEL", "LLM_MODEL_FALLBACK"],
    prefixes: ["GATEWAY_"],
  },
  monitor: {
    names: ["STUCK_AFTER_MS", "STUCK_POLICY", "RUN_TOKEN_BUDGET", "RUN_COST_BUDGET"],
    prefixes: ["MONITOR_"],
  },
};

/**
 * The environment of `service`: the allowed subset of `config` (the caller's environment with `./.env` under
 * it), then `extra` on top (what the cluster sets: NATS address and credentials, state dir, gateway tokens).
 * Unknown services get the system and common variables only.
 */
export function serviceEnv(
  service: string,
  config: Record<string, string | undefined>,
  extra: Record<string, string>,
): Record<string, string> {
  const allow = ALLOW[service as ClusterService] ?? { names: [] };
  const names = new Set([...SYSTEM, ...COMMON, ...allow.names]);
  const prefixes = [...SYSTEM_PREFIXES, ...(allow.prefixes ?? [])];
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(config)) {
    if (v === undefined) continue;
    if (names.has(k) || prefixes.some((p) => k.startsWith(p))) env[k] = v;
  }
  return { ...env, ...extra };
}

/** The environment of nats-server: PATH and locale only (its config file carries ports, store and users). */
export function natsServerEnv(config: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ["PATH", "LANG", "TZ"]) if (config[k] !== undefined) env[k] = config[k]!;
  return env;
}
