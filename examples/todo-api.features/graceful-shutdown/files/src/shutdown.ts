/**
 * Graceful shutdown of the HTTP server: on SIGTERM or SIGINT it stops accepting connections, lets in-flight
 * requests finish within a grace period, closes idle keep-alive connections, then ends the process.
 */
import type { Server } from "node:http";

/** Default time in-flight requests get to finish after a shutdown signal, in ms. */
export const DEFAULT_GRACE_MS = 10_000;

/** Options of {@link installShutdown}; every field has a default (the injectable ones exist for tests). */
export interface ShutdownOptions {
  /** How long in-flight requests may run after the signal before their connections are cut, in ms. */
  graceMs?: number;
  /** The signals that start a shutdown (default SIGTERM and SIGINT). */
  signals?: NodeJS.Signals[];
  /** Where the signals come from (default: `process`). */
  emitter?: { once(event: string, listener: () => void): unknown };
  /** Ends the process once the server is closed (default: `process.exit`). */
  exit?: (code: number) => void;
}

/**
 * Installs the shutdown handlers of `server` and returns `shutdown()`, which does what a signal does. The
 * exit code is 0 when every request finished within the grace period, 1 when the remaining connections had
 * to be cut. `shutdown()` resolves with that code after calling `exit` with it; later calls (and later
 * signals) return the same promise, so the process is never ended twice.
 */
export function installShutdown(server: Server, options: ShutdownOptions = {}): () => Promise<number> {
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const emitter = options.emitter ?? process;
  let closing: Promise<number> | undefined;
  const shutdown = (): Promise<number> => {
    closing ??= new Promise<number>((resolve) => {
      let code = 0;
      const timer = setTimeout(() => {
        code = 1;
        server.closeAllConnections();
      }, graceMs);
      timer.unref();
      // A request that finishes during the grace period leaves its keep-alive connection idle: close those as
      // they appear instead of waiting for the client's keep-alive timeout.
      const idle = setInterval(() => server.closeIdleConnections(), 50);
      idle.unref();
      server.close(() => {
        clearTimeout(timer);
        clearInterval(idle);
        resolve(code);
      });
      server.closeIdleConnections();
    }).then((code) => {
      exit(code);
      return code;
    });
    return closing;
  };
  for (const signal of options.signals ?? ["SIGTERM", "SIGINT"]) {
    emitter.once(signal, () => void shutdown());
  }
  return shutdown;
}
