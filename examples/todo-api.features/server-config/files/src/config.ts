/**
 * Server configuration from environment variables, validated up front so a bad value stops the server at
 * start-up instead of failing later.
 */

/** The validated configuration. `secret` is undefined when AUTH_SECRET is unset outside production. */
export interface ServerConfig {
  port: number;
  host: string;
  secret: string | undefined;
  tokenTtlMs: number;
}

/** An invalid environment; the message names every bad variable. */
export class ConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** Smallest accepted AUTH_SECRET, in characters. */
export const MIN_SECRET_LENGTH = 32;

function integer(
  env: Record<string, string | undefined>,
  name: string,
  fallback: number,
  min: number,
  max: number,
  problems: string[],
): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    return fallback;
  }
  return value;
}

/**
 * Reads PORT (0-65535, default 3000), HOST (default 127.0.0.1), AUTH_SECRET (at least 32 characters;
 * required when NODE_ENV is `production`) and TOKEN_TTL_SECONDS (1-604800, default 3600).
 * Throws {@link ConfigError} listing every invalid variable.
 */
export function loadConfig(env: Record<string, string | undefined>): ServerConfig {
  const problems: string[] = [];
  const port = integer(env, "PORT", 3000, 0, 65535, problems);
  const ttlSeconds = integer(env, "TOKEN_TTL_SECONDS", 3600, 1, 604800, problems);
  const secret = env.AUTH_SECRET === "" ? undefined : env.AUTH_SECRET;
  if (secret !== undefined && secret.length < MIN_SECRET_LENGTH) {
    problems.push(`AUTH_SECRET must be at least ${MIN_SECRET_LENGTH} characters long`);
  }
  if (secret === undefined && env.NODE_ENV === "production") {
    problems.push("AUTH_SECRET is required when NODE_ENV=production");
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  return { port, host: env.HOST || "127.0.0.1", secret, tokenTtlMs: ttlSeconds * 1000 };
}
