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

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Service name, set as the `service` field of every line (e.g. `merger`). */
  service: string;
  /** pino level; default `info` (env `LOG_LEVEL`). */
  level?: string;
  /**
   * Secret values (e.g. the provider key) that must never appear in a line, even inside free text.
   * Every occurrence in the serialized line is replaced by `[redacted]`. A list is read once, when the logger is
   * created; a {@link SecretSet} is read at every line, so values added to it later are redacted from then on.
   */
  secrets?: readonly (string | undefined)[] | SecretSet;
  /** Where lines go; default stdout (fd 1). */
  destination?: pino.DestinationStream;
}

/** Shortest secret redacted by value: shorter values would cut ordinary words out of every line. */
export const MIN_SECRET_LENGTH = 4;

/**
 * A set of secret values to redact by value, which may change while loggers use it (e.g. the LLM gateway adds the
 * provider key of every upstream added at run time). Values shorter than {@link MIN_SECRET_LENGTH} characters and
 * undefined ones are ignored.
 */
export class SecretSet {
  private readonly values = new Set<string>();

  /** @param values the initial secrets (undefined and too short ones are skipped). */
  constructor(values: Iterable<string | undefined> = []) {
    for (const v of values) this.add(v);
  }

  /** Adds a secret; from the next line on, every logger holding this set redacts it. */
  add(value: string | undefined): void {
    if (value !== undefined && value.length >= MIN_SECRET_LENGTH) this.values.add(value);
  }

  /** Stops redacting `value`. @returns whether it was in the set. */
  delete(value: string): boolean {
    return this.values.delete(value);
  }

  /** Number of secrets held. */
  get size(): number {
    return this.values.size;
  }

  /** `text` with every occurrence of every secret replaced by `[redacted]` (in the order they were added). */
  redact(text: string): string {
    let out = text;
    for (const s of this.values) if (out.includes(s)) out = out.split(s).join("[redacted]");
    return out;
  }
}

/**
 * Creates the structured JSON logger of a service: pino with secret redaction by path ({@link REDACT_PATHS}) and by
 * value (`opts.secrets`, applied to each serialized line before it reaches the destination).
 * Use child loggers (`log.child({ runId, taskId })`) for per-message context.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const secrets = opts.secrets instanceof SecretSet ? opts.secrets : new SecretSet(opts.secrets);
  const dest = opts.destination ?? pino.destination({ fd: 1, sync: false });
  // A fixed empty list needs no pass over each line; a SecretSet may gain values later, so it is always applied.
  const stream: pino.DestinationStream =
    secrets.size === 0 && !(opts.secrets instanceof SecretSet)
      ? dest
      : { write: (line: string) => dest.write(secrets.redact(line)) };
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
