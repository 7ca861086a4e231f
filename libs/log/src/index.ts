import { type Logger, pino } from "pino";

export type { Logger } from "pino";

/**
 * Object paths whose values are replaced by `[redacted]` in every log line. Covers provider keys,
 * tokens and passwords at the top level and one or two levels deep (pino `redact` wildcard rules).
 */
export const REDACT_PATHS = [
  "apiKey",
  "api_key",
  "token",
  "password",
  "pass",
  "secret",
  "authorization",
  "Authorization",
  "headers.authorization",
  "headers.Authorization",
  "*.apiKey",
  "*.api_key",
  "*.token",
  "*.password",
  "*.pass",
  "*.secret",
  "*.authorization",
  "*.*.apiKey",
  "*.*.token",
  "*.*.password",
];

export interface LoggerOptions {
  /** Service name, set as the `service` field of every line (e.g. `merger`). */
  service: string;
  /** pino level; default `info` (env `LOG_LEVEL`). */
  level?: string;
  /**
   * Secret values (e.g. the provider key) that must never appear in a line, even inside free text.
   * Every occurrence in the serialized line is replaced by `[redacted]`.
   */
  secrets?: readonly (string | undefined)[];
  /** Where lines go; default stdout (fd 1). */
  destination?: pino.DestinationStream;
}

/**
 * Creates the structured JSON logger of a service: pino with secret redaction by path and by value.
 * Use child loggers (`log.child({ runId, taskId })`) for per-message context.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const secrets = (opts.secrets ?? []).filter((s): s is string => typeof s === "string" && s.length >= 4);
  const dest = opts.destination ?? pino.destination({ fd: 1, sync: false });
  const stream: pino.DestinationStream =
    secrets.length === 0
      ? dest
      : {
          write(line: string) {
            let out = line;
            for (const s of secrets) out = out.split(s).join("[redacted]");
            dest.write(out);
          },
        };
  return pino(
    {
      name: `longshot-${opts.service}`,
      level: opts.level ?? process.env.LOG_LEVEL ?? "info",
      base: { service: opts.service, pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    stream,
  );
}
