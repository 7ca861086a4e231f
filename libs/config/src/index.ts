import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseEnv } from "node:util";
import { z } from "zod";

/** Thrown when configuration is invalid. `problems` lists every issue, one `VAR: message` per entry. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.problems = problems;
  }
}

/**
 * Reads environment variables: `.env` in `cwd` (if present) first, then the process environment on top
 * (the process wins). Uses Node's own `.env` parser (`util.parseEnv`).
 */
export function readEnv(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Record<string, string> {
  const file = `${cwd}/.env`;
  const fromFile = existsSync(file) ? parseEnv(readFileSync(file, "utf8")) : {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...fromFile, ...env })) if (typeof v === "string") out[k] = v;
  return out;
}

/**
 * Validates `env` against a zod object schema whose keys are variable names, and returns the parsed values.
 * @throws ConfigError listing every problem at once (not just the first).
 */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined>,
): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.join(".") || "(env)"}: ${i.message}`);
  throw new ConfigError(problems);
}

/** Empty strings count as unset, so `FOO=` in `.env` falls back to the default. */
const unsetIfEmpty = (v: unknown) => (v === "" ? undefined : v);
const int = (def: number, min = 0) =>
  z.preprocess(unsetIfEmpty, z.coerce.number().int().min(min).default(def));
const str = (def: string) => z.preprocess(unsetIfEmpty, z.string().default(def));
const optStr = () => z.preprocess(unsetIfEmpty, z.string().optional());
const onOff = () => z.preprocess(unsetIfEmpty, z.enum(["on", "off"]).optional());

/** One upstream model endpoint (`LLM_ENDPOINTS` entry). `weight` > 0 (relative share of traffic). */
export const LlmEndpoint = z.object({
  name: z.string().min(1),
  endpoint: z.url(),
  apiKey: z.string().optional(),
  weight: z.number().positive().default(1),
  /**
   * Model ids this endpoint serves (LLM gateway: a request for model X goes only to endpoints listing X, or
   * listing nothing). Omit for an endpoint that serves whatever it is asked.
   */
  models: z.array(z.string().min(1)).min(1).optional(),
});
export type LlmEndpoint = z.infer<typeof LlmEndpoint>;

const endpointsJson = z.preprocess(
  unsetIfEmpty,
  z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch (e) {
        ctx.addIssue({ code: "custom", message: `not valid JSON: ${(e as Error).message}` });
        return z.NEVER;
      }
    })
    .pipe(z.array(LlmEndpoint).min(1, "needs at least one endpoint"))
    .optional(),
);

/**
 * Every variable the services read (README "Configuration" lists them). Each service picks what it needs
 * from the parsed object; unknown variables are ignored.
 */
export const LongshotEnv = z
  .object({
    NATS_URL: str("nats://127.0.0.1:4222"),
    /**
     * This process's NATS user and password (per-role users, `nats.conf` / the embedded cluster); unset = connect
     * without credentials (a server with no users). The password is redacted from every log line.
     */
    NATS_USER: optStr(),
    NATS_PASSWORD: optStr(),
    /**
     * Replicas of every stream and KV bucket the services create (1 on a single node, 3 on a 3-node cluster;
     * 1–5, at most the cluster's size).
     */
    NATS_REPLICAS: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(1).max(5).default(1)),
    LOG_LEVEL: z.preprocess(
      unsetIfEmpty,
      z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
    ),
    /**
     * Where a service serves `/metrics` (Prometheus text) and `/healthz`: interface and TCP port. Port 0 = any free
     * port (logged at start); the embedded cluster gives each service its own, compose uses 9464 on 0.0.0.0.
     */
    METRICS_HOST: str("127.0.0.1"),
    METRICS_PORT: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).max(65_535).default(0)),
    LONGSHOT_STATE_DIR: optStr(),
    /**
     * Which instance of its service this process is, when several share one host and state dir (the embedded
     * cluster's `--instances`): its working files (clones, mirrors, sandbox registry) go under
     * `<state>/instances/<id>` so instances never reap or rewrite each other's. Letters, digits, `-`, `_`.
     */
    LONGSHOT_INSTANCE: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .regex(/^[A-Za-z0-9_-]{1,32}$/, "letters, digits, '-' or '_' (at most 32)")
        .optional(),
    ),
    LLM_BASE_URL: optStr(),
    LLM_API_KEY: optStr(),
    LLM_MODEL: str("glm-5"),
    LLM_MODEL_FALLBACK: optStr(),
    LLM_ENDPOINTS: endpointsJson,
    LLM_MAX_TOKENS: int(65_536, 1),
    LLM_TIMEOUT_MS: int(120_000, 1),
    /** The LLM gateway's admin base URL (e.g. http://127.0.0.1:4000): the dispatcher issues per-task tokens there. */
    LLM_GATEWAY_ADMIN_URL: optStr(),
    GATEWAY_ADMIN_TOKEN: optStr(),
    /** Token budget of each task's gateway token (0 = none). */
    WORKER_TOKEN_BUDGET: int(0, 0),
    MAX_WORKERS: int(50, 1),
    WORKER_TIMEOUT: int(1800, 1),
    SCOPE_POLICY: z.preprocess(unsetIfEmpty, z.enum(["exclusive", "advisory"]).default("exclusive")),
    MERGE_STRATEGY: z.preprocess(
      unsetIfEmpty,
      z.enum(["rebase", "fast-forward", "merge-commit"]).default("rebase"),
    ),
    /**
     * Whether the merge queue runs the target's check set (the reconciler's) on every candidate tree in a
     * sandbox before it lands (`on`), or lands whatever rebases cleanly (`off`).
     */
    MERGE_VERIFY: z.preprocess(unsetIfEmpty, z.enum(["on", "off"]).default("on")),
    /** Candidates the merge queue stacks and verifies at once per base branch (1 = serial verification). */
    MERGE_SPECULATION_DEPTH: int(4, 1),
    /** Timeout of each check of a candidate's verification, in ms (a check killed at it fails). */
    MERGE_VERIFY_TIMEOUT_MS: int(600_000, 1000),
    GIT_MAIN_BRANCH: str("main"),
    GIT_BRANCH_PREFIX: str("worker/"),
    /**
     * Where workers and sweeps run: `local` (bubblewrap boxes, the default), `modal` (Modal sandboxes), or
     * `unsafe-local` (plain child processes with the host's filesystem and network; explicit opt-in only).
     */
    SANDBOX_PROVIDER: z.preprocess(unsetIfEmpty, z.enum(["local", "modal", "unsafe-local"]).default("local")),
    /** Memory limit of each sandbox, in MiB. */
    SANDBOX_MEMORY_MB: int(4096, 64),
    /** CPU limit of each sandbox, in cores (fractions allowed). */
    SANDBOX_CPU_CORES: z.preprocess(unsetIfEmpty, z.coerce.number().positive().default(2)),
    /** Most processes and threads in one sandbox. */
    SANDBOX_PIDS_MAX: int(1024, 16),
    /** Largest branch bundle taken out of a sandbox, in bytes. */
    SANDBOX_MAX_BUNDLE_BYTES: int(256 * 1024 * 1024, 1024),
    /** Modal provider: the sandbox image (a registry tag built from infra/sandbox/Dockerfile). */
    SANDBOX_IMAGE: str("ghcr.io/longshot-dev/longshot-sandbox:latest"),
    /** Modal provider: the Modal app sandboxes belong to. */
    MODAL_APP: str("longshot"),
    /**
     * Modal provider credentials, read by the modal SDK itself from the environment (with
     * `MODAL_SERVER_URL`); listed here so they are validated and redacted from every log line.
     */
    MODAL_TOKEN_ID: optStr(),
    MODAL_TOKEN_SECRET: optStr(),
    /** Harness the worker runs: `pi` (the Pi coding agent) or `command` (any CLI agent, `WORKER_COMMAND`). */
    WORKER_HARNESS: z.preprocess(unsetIfEmpty, z.enum(["pi", "command"]).default("pi")),
    /** Shell template of the `command` harness; `{prompt_file}` is replaced by the prompt file's path. */
    WORKER_COMMAND: optStr(),
    /** Token for https targets (pushes and fetches by the dispatcher, merger and reconciler; never sandboxes). */
    GIT_TOKEN: optStr(),
    PLANNER_MAX_ITERATIONS: int(100, 1),
    /** Prompt budget of one planner call, estimated tokens: older turns are compacted into a run digest. */
    PLANNER_CONTEXT_TOKENS: int(64_000, 4_000),
    /**
     * Replies with tool calls the root planner and the subplanner may make per model call before they must answer
     * (0–50): they read the target repository at the planned commit (read_file, list, grep, git_log). 0 = no tools.
     */
    PLANNER_TOOL_ROUNDS: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).max(50).default(6)),
    /**
     * Reasoning ("thinking") of reasoning models such as GLM-5, for every role: `on`, `off`, or unset (the
     * model's default). Sent as `chat_template_kwargs.enable_thinking` (SGLang, vLLM).
     * `LLM_REASONING_<ROLE>` (PLANNER, SUBPLANNER, RECONCILER, WORKER) overrides it per role.
     */
    LLM_REASONING: onOff(),
    LLM_REASONING_PLANNER: onOff(),
    LLM_REASONING_SUBPLANNER: onOff(),
    LLM_REASONING_RECONCILER: onOff(),
    LLM_REASONING_WORKER: onOff(),
    MAX_CONFLICT_FIX_TASKS: int(30, 0),
    FINALIZATION_MAX_ATTEMPTS: int(3, 1),
    FINALIZATION_SWEEP_TIMEOUT_MS: int(120_000, 1),
    REPLAN_AFTER_HANDOFFS: int(3, 1),
    SWEEP_INSTALL_CMD: optStr(),
    SWEEP_BUILD_CMD: optStr(),
    SWEEP_TYPECHECK_CMD: optStr(),
    SWEEP_TEST_CMD: optStr(),
    SWEEP_TIMEOUT_MS: int(600_000, 1),
    /** Whether the sweep's dependency install may use the network (the other checks never can). */
    SWEEP_INSTALL_NETWORK: z.preprocess(unsetIfEmpty, z.enum(["on", "off"]).default("on")),
    RECONCILER_RED_INTERVAL_MS: int(60_000, 1000),
    RECONCILER_GREEN_INTERVAL_MS: int(300_000, 1000),
    RECONCILER_GREEN_STREAK: int(3, 1),
    RECONCILER_REFILE_AFTER_MS: int(300_000, 0),
    /** Monitor: a running task with no progress event for this long (ms) is stuck (`task.stuck`). */
    STUCK_AFTER_MS: int(600_000, 1000),
    /** Monitor: what a stuck task gets: `alert` (the `task.stuck` event only) or `retry` (its sandbox is stopped, the task retried). */
    STUCK_POLICY: z.preprocess(unsetIfEmpty, z.enum(["alert", "retry"]).default("alert")),
    /** Monitor: a run whose LLM usage passes this many tokens (prompt + completion) is cancelled; 0 = no budget. */
    RUN_TOKEN_BUDGET: int(0, 0),
    /** Monitor: a run whose LLM cost passes this (US dollars, `GATEWAY_PRICES`) is cancelled; 0 = no budget. */
    RUN_COST_BUDGET: z.preprocess(unsetIfEmpty, z.coerce.number().min(0).default(0)),
    /**
     * Monitor: nats-server monitoring endpoints (`http://host:8222`, comma-separated, one per node) whose `/varz`
     * and `/jsz` it exports as `gnatsd_varz_*` and `jetstream_*` metrics; unset = none (compose uses
     * prometheus-nats-exporter instead).
     */
    NATS_MONITOR_URL: optStr(),
  })
  .refine((c) => c.WORKER_HARNESS !== "command" || !!c.WORKER_COMMAND, {
    path: ["WORKER_COMMAND"],
    message: "WORKER_HARNESS=command needs WORKER_COMMAND (a shell template using {prompt_file})",
  });
export type LongshotEnv = z.infer<typeof LongshotEnv>;

/** Resolved model endpoint list: `LLM_ENDPOINTS` when set, else the single `LLM_BASE_URL`/`LLM_API_KEY`. */
export function llmEndpoints(cfg: LongshotEnv): LlmEndpoint[] {
  if (cfg.LLM_ENDPOINTS) return cfg.LLM_ENDPOINTS;
  if (cfg.LLM_BASE_URL) {
    return [
      {
        name: "default",
        endpoint: cfg.LLM_BASE_URL,
        weight: 1,
        ...(cfg.LLM_API_KEY ? { apiKey: cfg.LLM_API_KEY } : {}),
      },
    ];
  }
  return [];
}

/**
 * Loads and validates the whole configuration from `.env` + the environment.
 * @throws ConfigError with every problem listed.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): LongshotEnv {
  return parseConfig(LongshotEnv, readEnv(env, cwd));
}

/** Every secret value in the configuration, for log redaction by value. */
export function configSecrets(cfg: LongshotEnv): string[] {
  return [
    cfg.LLM_API_KEY,
    cfg.GATEWAY_ADMIN_TOKEN,
    cfg.NATS_PASSWORD,
    cfg.GIT_TOKEN,
    cfg.MODAL_TOKEN_SECRET,
    ...(cfg.LLM_ENDPOINTS ?? []).map((e) => e.apiKey),
  ].filter((s): s is string => !!s);
}

/** The roles with their own reasoning switch (`LLM_REASONING_<ROLE>`). */
export type ReasoningRole = "planner" | "subplanner" | "reconciler" | "worker";

/**
 * Whether `role`'s model calls ask for reasoning: `LLM_REASONING_<ROLE>`, else `LLM_REASONING`; undefined when
 * neither is set (the model's default, nothing is sent).
 */
export function reasoningFor(cfg: LongshotEnv, role: ReasoningRole): boolean | undefined {
  const v =
    cfg[`LLM_REASONING_${role.toUpperCase()}` as `LLM_REASONING_${Uppercase<ReasoningRole>}`] ??
    cfg.LLM_REASONING;
  return v === undefined ? undefined : v === "on";
}

/** Where services keep working state (clones, sandbox registry): `LONGSHOT_STATE_DIR`, default `~/.longshot`. */
export function stateDir(cfg: LongshotEnv): string {
  return cfg.LONGSHOT_STATE_DIR ?? join(homedir(), ".longshot");
}

/**
 * This process's own part of the state dir: {@link stateDir}, or `<state>/instances/<LONGSHOT_INSTANCE>` when an
 * instance id is set, so two instances of one service on one host keep separate clones, mirrors and sandbox
 * registries (a dispatcher reaps every sandbox of its registry at start).
 */
export function instanceStateDir(cfg: LongshotEnv): string {
  return cfg.LONGSHOT_INSTANCE ? join(stateDir(cfg), "instances", cfg.LONGSHOT_INSTANCE) : stateDir(cfg);
}
