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
export const LongshotEnv = z.object({
  NATS_URL: str("nats://127.0.0.1:4222"),
  LOG_LEVEL: z.preprocess(
    unsetIfEmpty,
    z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  ),
  LONGSHOT_STATE_DIR: optStr(),
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
  GIT_MAIN_BRANCH: str("main"),
  GIT_BRANCH_PREFIX: str("worker/"),
  SANDBOX_PROVIDER: z.preprocess(unsetIfEmpty, z.enum(["local"]).default("local")),
  PLANNER_MAX_ITERATIONS: int(100, 1),
  MAX_CONFLICT_FIX_TASKS: int(30, 0),
  FINALIZATION_MAX_ATTEMPTS: int(3, 1),
  FINALIZATION_SWEEP_TIMEOUT_MS: int(120_000, 1),
  REPLAN_AFTER_HANDOFFS: int(3, 1),
  SWEEP_INSTALL_CMD: optStr(),
  SWEEP_BUILD_CMD: optStr(),
  SWEEP_TYPECHECK_CMD: optStr(),
  SWEEP_TEST_CMD: optStr(),
  SWEEP_TIMEOUT_MS: int(600_000, 1),
  RECONCILER_RED_INTERVAL_MS: int(60_000, 1000),
  RECONCILER_GREEN_INTERVAL_MS: int(300_000, 1000),
  RECONCILER_GREEN_STREAK: int(3, 1),
  RECONCILER_REFILE_AFTER_MS: int(300_000, 0),
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
  return [cfg.LLM_API_KEY, cfg.GATEWAY_ADMIN_TOKEN, ...(cfg.LLM_ENDPOINTS ?? []).map((e) => e.apiKey)].filter(
    (s): s is string => !!s,
  );
}

/** Where services keep working state (clones, sandbox registry): `LONGSHOT_STATE_DIR`, default `~/.longshot`. */
export function stateDir(cfg: LongshotEnv): string {
  return cfg.LONGSHOT_STATE_DIR ?? join(homedir(), ".longshot");
}
