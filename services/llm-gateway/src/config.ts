import { ConfigError, LlmEndpoint, parseConfig } from "@longshot/config";
import { z } from "zod";
import { POLICY_NAMES } from "./domain/policy.ts";
import type { GatewayOptions } from "./gateway.ts";

const unset = (v: unknown) => (v === "" ? undefined : v);
const int = (def: number, min = 0) => z.preprocess(unset, z.coerce.number().int().min(min).default(def));
const num = (def: number, min = 0) => z.preprocess(unset, z.coerce.number().min(min).default(def));
const json = <T extends z.ZodType>(schema: T) =>
  z.preprocess(
    unset,
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
      .pipe(schema)
      .optional(),
  );
const bool = (def: boolean) =>
  z.preprocess(
    unset,
    z
      .enum(["true", "false", "1", "0", "yes", "no"])
      .default(def ? "true" : "false")
      .transform((v) => v === "true" || v === "1" || v === "yes"),
  );

const Price = z.object({
  inputPerMTok: z.number().min(0),
  cachedInputPerMTok: z.number().min(0).optional(),
  outputPerMTok: z.number().min(0),
});

/** Environment variables of the gateway (README "Configuration"). */
export const GatewayEnv = z
  .object({
    LLM_ENDPOINTS: json(z.array(LlmEndpoint).min(1, "needs at least one endpoint")),
    LLM_BASE_URL: z.preprocess(unset, z.url().optional()),
    LLM_API_KEY: z.preprocess(unset, z.string().optional()),
    GATEWAY_HOST: z.preprocess(unset, z.string().default("127.0.0.1")),
    GATEWAY_PORT: int(4000, 0).pipe(z.number().max(65535)),
    GATEWAY_POLICY: z.preprocess(unset, z.enum(POLICY_NAMES).default("cache_aware")),
    GATEWAY_SESSION_AFFINITY: bool(true),
    GATEWAY_AUTH: z.preprocess(unset, z.enum(["tokens", "open"]).default("tokens")),
    GATEWAY_ADMIN_TOKEN: z.preprocess(unset, z.string().min(16, "must be at least 16 characters").optional()),
    GATEWAY_PRICES: json(z.record(z.string(), Price)),
    GATEWAY_MAX_CONCURRENT: int(512, 1),
    GATEWAY_MAX_QUEUE: int(2048, 0),
    GATEWAY_QUEUE_TIMEOUT_MS: int(30_000, 0),
    GATEWAY_REQUEST_TIMEOUT_MS: int(600_000, 1),
    GATEWAY_FIRST_BYTE_TIMEOUT_MS: int(120_000, 1),
    GATEWAY_MAX_RETRIES: int(3, 0),
    GATEWAY_MAX_BODY_BYTES: int(64 * 1024 * 1024, 1024),
    GATEWAY_USAGE_FLUSH_MS: int(1000, 10),
    NATS_URL: z.preprocess(unset, z.string().min(1).optional()),
    GATEWAY_HEALTH_INTERVAL_MS: int(5000, 0),
    GATEWAY_HEALTH_MODE: z.preprocess(unset, z.enum(["health", "models"]).default("health")),
    GATEWAY_CB_FAILURES: int(5, 1),
    GATEWAY_CB_OPEN_MS: int(10_000, 0),
    GATEWAY_CACHE_THRESHOLD: num(0.3, 0).pipe(z.number().max(1)),
    GATEWAY_BALANCE_ABS: int(8, 0),
    GATEWAY_BALANCE_REL: num(1.5, 1),
    LOG_LEVEL: z.preprocess(
      unset,
      z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
    ),
  })
  .superRefine((env, ctx) => {
    if (env.LLM_ENDPOINTS && env.LLM_BASE_URL) {
      ctx.addIssue({
        code: "custom",
        path: ["LLM_BASE_URL"],
        message: "set either LLM_ENDPOINTS or LLM_BASE_URL, not both",
      });
    }
    if (!env.LLM_ENDPOINTS && !env.LLM_BASE_URL && !env.GATEWAY_ADMIN_TOKEN) {
      ctx.addIssue({
        code: "custom",
        path: ["LLM_ENDPOINTS"],
        message:
          "no upstream: set LLM_ENDPOINTS or LLM_BASE_URL (or GATEWAY_ADMIN_TOKEN to add them at run time)",
      });
    }
    if (env.GATEWAY_AUTH === "tokens" && !env.GATEWAY_ADMIN_TOKEN) {
      ctx.addIssue({
        code: "custom",
        path: ["GATEWAY_ADMIN_TOKEN"],
        message:
          "required when GATEWAY_AUTH=tokens (tokens are issued through the admin API); or set GATEWAY_AUTH=open",
      });
    }
    const names = new Set<string>();
    for (const e of env.LLM_ENDPOINTS ?? []) {
      if (names.has(e.name)) {
        ctx.addIssue({
          code: "custom",
          path: ["LLM_ENDPOINTS"],
          message: `duplicate endpoint name ${JSON.stringify(e.name)}`,
        });
      }
      names.add(e.name);
    }
  });
/** Parsed {@link GatewayEnv}. */
export type GatewayEnv = z.infer<typeof GatewayEnv>;

/**
 * Reads the gateway's configuration from environment variables.
 * @returns `startGateway` options (logging options excluded).
 * @throws ConfigError listing every problem at once.
 */
export function gatewayOptionsFromEnv(
  env: Record<string, string | undefined>,
): GatewayOptions & { logLevel: string } {
  const cfg = parseConfig(GatewayEnv, env);
  const upstreams =
    cfg.LLM_ENDPOINTS ??
    (cfg.LLM_BASE_URL
      ? [
          {
            name: "default",
            endpoint: cfg.LLM_BASE_URL,
            weight: 1,
            ...(cfg.LLM_API_KEY ? { apiKey: cfg.LLM_API_KEY } : {}),
          },
        ]
      : []);
  return {
    upstreams,
    host: cfg.GATEWAY_HOST,
    port: cfg.GATEWAY_PORT,
    policy: cfg.GATEWAY_POLICY,
    sessionAffinity: cfg.GATEWAY_SESSION_AFFINITY,
    auth: cfg.GATEWAY_AUTH,
    ...(cfg.GATEWAY_ADMIN_TOKEN ? { adminToken: cfg.GATEWAY_ADMIN_TOKEN } : {}),
    prices: cfg.GATEWAY_PRICES ?? {},
    admission: {
      maxConcurrent: cfg.GATEWAY_MAX_CONCURRENT,
      maxQueue: cfg.GATEWAY_MAX_QUEUE,
      queueTimeoutMs: cfg.GATEWAY_QUEUE_TIMEOUT_MS,
    },
    requestTimeoutMs: cfg.GATEWAY_REQUEST_TIMEOUT_MS,
    maxBodyBytes: cfg.GATEWAY_MAX_BODY_BYTES,
    usageFlushMs: cfg.GATEWAY_USAGE_FLUSH_MS,
    firstByteTimeoutMs: cfg.GATEWAY_FIRST_BYTE_TIMEOUT_MS,
    retry: { maxRetries: cfg.GATEWAY_MAX_RETRIES },
    breaker: { failureThreshold: cfg.GATEWAY_CB_FAILURES, openMs: cfg.GATEWAY_CB_OPEN_MS },
    health:
      cfg.GATEWAY_HEALTH_INTERVAL_MS === 0
        ? false
        : { intervalMs: cfg.GATEWAY_HEALTH_INTERVAL_MS, mode: cfg.GATEWAY_HEALTH_MODE },
    cacheAware: {
      threshold: cfg.GATEWAY_CACHE_THRESHOLD,
      balanceAbsThreshold: cfg.GATEWAY_BALANCE_ABS,
      balanceRelThreshold: cfg.GATEWAY_BALANCE_REL,
    },
    logLevel: cfg.LOG_LEVEL,
  };
}

export { ConfigError };
