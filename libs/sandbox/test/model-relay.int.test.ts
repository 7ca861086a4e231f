import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { RelayLine } from "@longshot/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModelRelay, rewriteChatBody } from "../src/index.ts";

// The provider's end of the model relay against a real HTTP upstream (the gateway's place): what passes,
// what is refused before it leaves, what the sandbox gets back.

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

let upstream: Server;
let base: string;
const seen: Seen[] = [];
let aborted = 0;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      if (req.url === "/v1/models") {
        res.writeHead(200, { "content-type": "application/json", "x-secret-upstream": "1" });
        res.end(JSON.stringify({ data: [{ id: "m" }] }));
        return;
      }
      if (req.url === "/v1/chat/completions" && !Buffer.concat(chunks).toString().includes("slow")) {
        // Streams "é" split across two writes: the relay must not corrupt multi-byte characters.
        res.writeHead(200, { "content-type": "text/event-stream" });
        const bytes = Buffer.from("data: é\n\n");
        res.write(bytes.subarray(0, 7));
        setTimeout(() => res.end(bytes.subarray(7)), 20);
        return;
      }
      res.on("close", () => {
        if (!res.writableEnded) aborted++;
      });
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: first\n\n");
    });
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  upstream.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
});

/** Runs one relay with its lines collected; resolves the lines of `id` once it ends. */
function relay() {
  const lines: RelayLine[] = [];
  const waiters = new Map<string, () => void>();
  const r = createModelRelay({ baseUrl: base, apiKey: "tok-task-7", runId: "run-1", taskId: "t-1" }, (l) => {
    lines.push(l);
    if (l.kind === "model.end") waiters.get(l.id)?.();
  });
  const ended = (id: string) => new Promise<void>((res) => waiters.set(id, res));
  const of = (id: string) => lines.filter((l) => l.id === id);
  return { r, lines, ended, of };
}

const req = (
  id: string,
  method: "GET" | "POST",
  path: string,
  headers: Record<string, string> = {},
  model = "m",
) => ({
  kind: "model.request" as const,
  id,
  method,
  path,
  headers,
  body: method === "POST" ? JSON.stringify({ model }) : "",
});

describe("model relay (provider side)", () => {
  it("forwards a chat completion with the task's credential and routing headers, streaming the answer intact", async () => {
    const { r, ended, of } = relay();
    const done = ended("a");
    r.request(
      req("a", "POST", "/v1/chat/completions", {
        "content-type": "application/json",
        authorization: "Bearer stolen",
        "x-longshot-task-id": "someone-else",
        cookie: "c=1",
      }),
    );
    await done;
    const call = seen.at(-1)!;
    expect(call).toMatchObject({ method: "POST", url: "/v1/chat/completions", body: '{"model":"m"}' });
    expect(call.headers.authorization).toBe("Bearer tok-task-7");
    expect(call.headers["x-longshot-task-id"]).toBe("t-1");
    expect(call.headers["x-longshot-run-id"]).toBe("run-1");
    expect(call.headers.cookie).toBeUndefined();
    const lines = of("a");
    expect(lines[0]).toMatchObject({
      kind: "model.response",
      status: 200,
      headers: { "content-type": "text/event-stream" },
    });
    const body = lines.flatMap((l) => (l.kind === "model.chunk" ? [l.data] : [])).join("");
    expect(body).toBe("data: é\n\n");
    expect(lines.at(-1)).toEqual({ kind: "model.end", id: "a" });
  });

  it("passes only the content type of the answer back", async () => {
    const { r, ended, of } = relay();
    const done = ended("m");
    r.request(req("m", "GET", "/v1/models"));
    await done;
    expect(of("m")[0]).toEqual({
      kind: "model.response",
      id: "m",
      status: 200,
      headers: { "content-type": "application/json" },
    });
  });

  it("refuses any other route with 403 before anything leaves: the admin API, other paths, traversal", async () => {
    const before = seen.length;
    for (const [i, path] of [
      "/admin/tokens",
      "/v1/../admin/tokens",
      "/metrics",
      "/v1/embeddings",
    ].entries()) {
      const { r, ended, of } = relay();
      const done = ended(`x${i}`);
      r.request(req(`x${i}`, "POST", path));
      await done;
      expect(of(`x${i}`)[0]).toMatchObject({ kind: "model.response", status: 403 });
    }
    expect(seen.length).toBe(before);
  });

  it("aborts the upstream call when the sandbox cancels it", async () => {
    const { r, lines } = relay();
    r.request(req("s", "POST", "/v1/chat/completions", {}, "slow"));
    for (let i = 0; i < 100 && !lines.some((l) => l.kind === "model.chunk"); i++) {
      await new Promise((res) => setTimeout(res, 10));
    }
    expect(lines.some((l) => l.kind === "model.chunk" && l.data === "data: first\n\n")).toBe(true);
    const before = aborted;
    r.cancel("s");
    for (let i = 0; i < 100 && aborted === before; i++) await new Promise((res) => setTimeout(res, 10));
    expect(aborted).toBe(before + 1);
  });

  it("ends a call to an unreachable endpoint with an error instead of hanging", async () => {
    const lines: RelayLine[] = [];
    let end: () => void = () => undefined;
    const ended = new Promise<void>((res) => {
      end = res;
    });
    const r = createModelRelay({ baseUrl: "http://127.0.0.1:1/v1", runId: "r", taskId: "t" }, (l) => {
      lines.push(l);
      if (l.kind === "model.end") end();
    });
    r.request(req("u", "GET", "/v1/models"));
    await ended;
    expect(lines.at(-1)).toMatchObject({ kind: "model.end", id: "u", error: expect.any(String) });
  });
});

describe("rewriteChatBody", () => {
  it("drops earlier turns' reasoning and sets the reasoning switch; other bodies pass unchanged", () => {
    const body = JSON.stringify({
      model: "glm-5",
      messages: [
        { role: "user", content: "do it" },
        { role: "assistant", content: "ok", reasoning_content: "long thoughts…", tool_calls: [] },
        { role: "tool", content: "done", tool_call_id: "c1" },
      ],
      chat_template_kwargs: { other: 1 },
    });
    const out = JSON.parse(rewriteChatBody(body, false));
    expect(out.messages[1]).toEqual({ role: "assistant", content: "ok", tool_calls: [] });
    expect(out.chat_template_kwargs).toEqual({ other: 1, enable_thinking: false });
    expect(JSON.parse(rewriteChatBody(body, undefined)).chat_template_kwargs).toEqual({ other: 1 });
    const plain = JSON.stringify({ model: "m", messages: [{ role: "user", content: "x" }] });
    expect(rewriteChatBody(plain, undefined)).toBe(plain);
    expect(rewriteChatBody("not json", true)).toBe("not json");
  });

  it("is applied to relayed calls", async () => {
    const lines: RelayLine[] = [];
    let end: () => void = () => undefined;
    const done = new Promise<void>((r) => {
      end = r;
    });
    const r = createModelRelay({ baseUrl: base, runId: "run-1", taskId: "t-1", reasoning: true }, (l) => {
      lines.push(l);
      if (l.kind === "model.end") end();
    });
    r.request({
      kind: "model.request",
      id: "w",
      method: "POST",
      path: "/v1/chat/completions",
      headers: {},
      body: JSON.stringify({
        model: "m",
        messages: [{ role: "assistant", content: "a", reasoning_content: "r" }],
      }),
    });
    await done;
    expect(JSON.parse(seen.at(-1)!.body)).toEqual({
      model: "m",
      messages: [{ role: "assistant", content: "a" }],
      chat_template_kwargs: { enable_thinking: true },
    });
  });
});
