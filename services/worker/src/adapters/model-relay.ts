import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { RELAYED_REQUEST_HEADERS, RelayLine, type WorkerLine } from "@longshot/contracts";

/** Largest request body the relay accepts from the agent, in bytes (a long conversation plus tools). */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** The worker's end of the model relay. */
export interface ModelRelay {
  /** OpenAI-compatible base URL the harness uses: `http://127.0.0.1:<port>/v1` (the sandbox's own loopback). */
  baseUrl: string;
  close(): Promise<void>;
}

/**
 * Starts the worker's end of the model relay: an HTTP server on the sandbox's loopback that turns every
 * request into a `model.request` line on stdout (through `send`) and answers it from the `RelayLine`s the
 * provider writes to `input` (the worker's stdin): status and headers, body chunks as they stream, end. A
 * request the agent abandons (its connection closes first) is cancelled with `model.cancel`. The sandbox has
 * no network and holds no key: the provider outside forwards the call to the model endpoint with the task's
 * own credentials (libs/sandbox/src/model-relay.ts). Requests over 32 MiB get 413.
 */
export async function startModelRelay(
  send: (line: WorkerLine) => Promise<void> | void,
  input: NodeJS.ReadableStream,
): Promise<ModelRelay> {
  const pending = new Map<string, ServerResponse>();
  let next = 0;

  const lines = createInterface({ input, crlfDelay: Infinity });
  lines.on("line", (text) => {
    let parsed: RelayLine;
    try {
      const r = RelayLine.safeParse(JSON.parse(text));
      if (!r.success) return;
      parsed = r.data;
    } catch {
      return;
    }
    const res = pending.get(parsed.id);
    if (!res) return;
    if (parsed.kind === "model.response") {
      const headers: Record<string, string> = {};
      const type = parsed.headers["content-type"];
      if (type) headers["content-type"] = type;
      res.writeHead(parsed.status, headers);
    } else if (parsed.kind === "model.chunk") {
      if (!res.headersSent) res.writeHead(200);
      res.write(parsed.data);
    } else {
      pending.delete(parsed.id);
      if (parsed.error !== undefined && !res.headersSent) {
        res.writeHead(502, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `model relay: ${parsed.error}`, type: "relay_error" } }));
      } else if (parsed.error !== undefined) {
        res.destroy(new Error(parsed.error));
      } else {
        res.end();
      }
    }
  });

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) tooBig = true;
      else chunks.push(c);
    });
    req.on("end", () => {
      if (tooBig) {
        res.writeHead(413, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "request too large for the model relay" } }));
        return;
      }
      const method = req.method === "GET" ? "GET" : req.method === "POST" ? "POST" : undefined;
      if (!method) {
        res.writeHead(405);
        res.end();
        return;
      }
      const id = `m${++next}`;
      const headers: Record<string, string> = {};
      for (const name of RELAYED_REQUEST_HEADERS) {
        const v = req.headers[name];
        if (typeof v === "string") headers[name] = v;
      }
      pending.set(id, res);
      res.on("close", () => {
        if (pending.delete(id)) void send({ kind: "model.cancel", id });
      });
      void send({
        kind: "model.request",
        id,
        method,
        path: req.url ?? "/",
        headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
    });
  };

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        lines.close();
        for (const res of pending.values()) res.destroy();
        pending.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
