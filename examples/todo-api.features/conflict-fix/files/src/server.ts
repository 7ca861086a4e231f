/**
 * The HTTP server: adapts node:http to the in-process app. Run it with `node src/server.ts` (PORT, default
 * 3000; HOST, default 127.0.0.1).
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { type App, createApp } from "./app.ts";
import { loadConfig } from "./config.ts";
import { installShutdown } from "./shutdown.ts";

/** Largest accepted request body, in bytes (1 MiB). Larger bodies get 413 `payload_too_large`. */
export const MAX_BODY_BYTES = 1024 * 1024;

async function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) return undefined;
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** A node:http server that serves `app` (not listening yet). */
export function createHttpServer(app: App): Server {
  return createServer(async (req, res) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(", ") : v;
    }
    const body = await readBody(req, MAX_BODY_BYTES);
    const out = await app.handle({
      method: req.method ?? "GET",
      url: req.url ?? "/",
      headers,
      body,
      bodyTooLarge: body === undefined,
    });
    res.writeHead(out.status, out.headers);
    res.end(out.body === undefined ? undefined : JSON.stringify(out.body));
  });
}

// #region main
if (import.meta.main) {
  const config = loadConfig(process.env);
  const server = createHttpServer(createApp({ secret: config.secret, tokenTtlMs: config.tokenTtlMs }));
  installShutdown(server);
  server.listen(config.port, config.host, () =>
    console.log(`todo-api listening on http://${config.host}:${config.port}`),
  );
}
// #endregion main
