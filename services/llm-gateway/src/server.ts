import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { GatewayContext } from "./context.ts";
import { handleAdmin } from "./handlers/admin.ts";
import { authenticate } from "./handlers/auth.ts";
import { handleChat } from "./handlers/chat.ts";
import { handleModels } from "./handlers/models.ts";
import { handleHealth, handleMetrics } from "./handlers/probes.ts";
import { sendError } from "./http-util.ts";
import type { UpstreamAdmin } from "./upstream-registry.ts";

/**
 * Routes one request to its handler (README "HTTP API"): `/v1/chat/completions` (POST), `/v1/models[/{id}]`
 * (GET, authenticated), `/healthz`, `/readyz`, `/metrics`, `/admin/*`; 405 for a wrong method on a `/v1` route,
 * 404 otherwise. Rejects only on an internal error (answered 500 by the server).
 */
export async function route(
  ctx: GatewayContext,
  upstreamAdmin: UpstreamAdmin,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const t0 = performance.now();
  const path = (req.url ?? "/").split("?")[0] ?? "/";
  const method = req.method ?? "GET";
  if (path === "/v1/chat/completions") {
    if (method !== "POST") return sendError(res, 405, "method_not_allowed", `use POST on ${path}`);
    return handleChat(ctx, req, res, t0);
  }
  if (path === "/v1/models" || path.startsWith("/v1/models/")) {
    if (method !== "GET") return sendError(res, 405, "method_not_allowed", `use GET on ${path}`);
    if ((await authenticate(ctx, req, res)) === undefined) return;
    return handleModels(ctx, res, path.slice("/v1/".length));
  }
  if (path === "/healthz" || path === "/readyz") return handleHealth(ctx, res, path === "/readyz");
  if (path === "/metrics" && method === "GET") return handleMetrics(ctx, res);
  if (path.startsWith("/admin/")) return handleAdmin(ctx, upstreamAdmin, req, res, path, method);
  sendError(res, 404, "not_found", `unknown route ${method} ${path}`);
}

/** The gateway's HTTP server: listening, and closing with a grace period for requests in flight. */
export interface HttpServer {
  /** Listens on `host:port` (0 = a free port). @returns the port. @throws the listen error (e.g. EADDRINUSE). */
  listen(port: number, host: string): Promise<number>;
  /**
   * Stops accepting connections, closes idle ones, waits up to `graceMs` for requests in flight, then cuts every
   * connection. Resolves once the server is closed.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * Creates the HTTP server over `handle` (e.g. {@link route}), counting client requests in flight until their
 * response closes. A handler that rejects is logged and answered 500 `internal_error` (or cut once a response
 * began). Keep-alive 65 s; a request body must arrive within 120 s (responses, streams included, are not bounded).
 */
export function createHttpServer(
  ctx: GatewayContext,
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
): HttpServer {
  let inflight = 0;
  let idleResolvers: (() => void)[] = [];
  const server = createServer((req, res) => {
    inflight++;
    res.once("close", () => {
      inflight--;
      if (inflight === 0) {
        const r = idleResolvers;
        idleResolvers = [];
        for (const f of r) f();
      }
    });
    handle(req, res).catch((err: unknown) => {
      ctx.log.error({ err: (err as Error).message }, "internal error");
      if (!res.headersSent) sendError(res, 500, "internal_error", "llm-gateway internal error");
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 120_000; // receiving a request body; responses (streams) are not bounded by it

  return {
    async listen(port, host) {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      return (server.address() as AddressInfo).port;
    },
    async close(graceMs) {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (graceMs > 0 && inflight > 0) {
        await Promise.race([
          new Promise<void>((r) => idleResolvers.push(r)),
          sleep(graceMs, undefined, { ref: false }),
        ]);
      }
      server.closeAllConnections();
      await stopped;
    },
  };
}

/** The OpenAI base URL of a gateway listening on `host:port`: `http://HOST:PORT/v1` (a wildcard host as 127.0.0.1). */
export function baseUrl(host: string, port: number): string {
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  return `http://${urlHost}:${port}/v1`;
}
