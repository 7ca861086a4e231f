import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { type Gateway, type GatewayOptions, startGateway, UPSTREAM_HEADER } from "../src/index.ts";
import { sample, startReplica, startReplicas, type TestReplica, until } from "./replicas.ts";

const running: { gateways: Gateway[]; replicas: TestReplica[] } = { gateways: [], replicas: [] };
afterEach(async () => {
  await Promise.all(running.gateways.splice(0).map((g) => g.close()));
  await Promise.all(running.replicas.splice(0).map((r) => r.stop()));
});

async function replicas(n: number, flags: string[] = [], prefix = "r"): Promise<TestReplica[]> {
  const rs = await startReplicas(n, flags, prefix);
  running.replicas.push(...rs);
  return rs;
}

async function gateway(rs: TestReplica[], options: Partial<GatewayOptions> = {}): Promise<Gateway> {
  const gw = await startGateway({
    upstreams: rs.map((r) => ({ name: r.name, endpoint: r.url })),
    auth: "open",
    policy: "round_robin",
    sessionAffinity: false,
    health: false,
    logDestination: { write() {} },
    retry: { maxRetries: 3, baseMs: 1, maxMs: 5 },
    ...options,
  });
  running.gateways.push(gw);
  return gw;
}

const client = (gw: Gateway) => new OpenAI({ baseURL: gw.url, apiKey: "open", maxRetries: 0 });
const user = (text: string): OpenAI.ChatCompletionMessageParam[] => [{ role: "user", content: text }];

async function served(gw: Gateway, text: string): Promise<{ upstream: string; status: number }> {
  const res = await fetch(`${gw.url}/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "sim-1", messages: user(text) }),
  });
  await res.arrayBuffer();
  return { upstream: res.headers.get(UPSTREAM_HEADER) ?? "", status: res.status };
}

describe("llm-gateway resilience (real sim-llm replica processes)", () => {
  it("a replica killed mid-run costs no request that had not started streaming", async () => {
    const [r1, r3] = await Promise.all([
      startReplica("r1", ["--ttft-ms", "20", "--tps", "2000"]),
      startReplica("r3", ["--ttft-ms", "20", "--tps", "2000"]),
    ]);
    const r2 = await startReplica("r2", ["--ttft-ms", "60000"]); // everything it takes is still before its first byte
    running.replicas.push(r1!, r2, r3!);
    const gw = await gateway([r1!, r2, r3!], { health: { intervalMs: 100 } });
    const c = client(gw);
    const outcomes = Array.from({ length: 30 }, (_, i) =>
      (async () => {
        let chunks = 0;
        let text = "";
        try {
          const s = await c.chat.completions.create({
            model: "sim-1",
            messages: user(`req ${i}`),
            stream: true,
          });
          for await (const ch of s) {
            chunks++;
            text += ch.choices[0]?.delta.content ?? "";
          }
          return { ok: true, chunks, text };
        } catch (err) {
          return { ok: false, chunks, text, err };
        }
      })(),
    );
    await until(
      async () => (await r2.metric("sglang:num_running_reqs")) >= 10,
      10_000,
      "r2 to hold 10 requests",
    );
    await r2.kill();
    const results = await Promise.all(outcomes);
    const failedBeforeStreaming = results.filter((r) => !r.ok && r.chunks === 0);
    expect(failedBeforeStreaming).toEqual([]);
    expect(results.every((r) => r.ok && r.text.length > 0)).toBe(true);
    const metrics = await gw.metricsText();
    expect(sample(metrics, "llm_gateway_retries_total", 'upstream="r2"')).toBeGreaterThanOrEqual(10);
    // New requests keep working while r2 is dead (connection refused is retried, then health checks drop it).
    const after = await Promise.all(Array.from({ length: 9 }, (_, i) => served(gw, `after ${i}`)));
    expect(after.every((a) => a.status === 200 && a.upstream !== "r2")).toBe(true);
    await until(
      () => gw.upstreams.list().find((u) => u.name === "r2")!.healthy === false,
      5000,
      "r2 unhealthy",
    );
  });

  it("does not retry once a stream reached the client: a drop mid-stream surfaces as an error", async () => {
    const [r1, r2] = await replicas(2, ["--tps", "5000"]);
    await r1!.setFaults({ dropRate: 1, dropAfterChunks: 2 });
    const gw = await gateway([r1!, r2!]);
    let chunks = 0;
    const err = await (async () => {
      const s = await client(gw).chat.completions.create({
        model: "sim-1",
        messages: user("x"),
        stream: true,
      });
      for await (const _ of s) chunks++;
    })().catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(chunks).toBe(2);
    expect(await r1!.metric("sglang:num_requests_total")).toBe(1);
    expect(await r2!.metric("sglang:num_requests_total")).toBe(0);
  });

  it("an open circuit stops traffic to a failing replica, which recovers once healthy", async () => {
    const [r1, r2, r3] = await replicas(3);
    await r1!.setFaults({ errorRate: 1, errorStatus: 503 });
    const gw = await gateway([r1!, r2!, r3!], {
      // long enough that the 12 requests below all fall inside the open period, even on a busy machine
      breaker: { failureThreshold: 2, successThreshold: 1, openMs: 1500 },
    });
    for (let i = 0; i < 12; i++) {
      const s = await served(gw, `q${i}`);
      expect(s.status).toBe(200);
      expect(s.upstream).not.toBe("r1");
    }
    expect(await r1!.metric("sglang:num_requests_total")).toBe(2); // the circuit opened after 2 failures
    let metrics = await gw.metricsText();
    expect(sample(metrics, "llm_gateway_circuit_breaker_state", 'upstream="r1",state="open"')).toBe(1);
    expect(sample(metrics, "llm_gateway_circuit_breaker_state", 'upstream="r1",state="closed"')).toBe(0);
    expect(sample(metrics, "llm_gateway_circuit_breaker_transitions_total", 'upstream="r1",to="open"')).toBe(
      1,
    );

    await r1!.setFaults({ errorRate: 0 });
    let back = false;
    await until(
      async () => (back = (await served(gw, "probe")).upstream === "r1"),
      5000,
      "r1 to serve again",
    );
    expect(back).toBe(true);
    metrics = await gw.metricsText();
    expect(sample(metrics, "llm_gateway_circuit_breaker_state", 'upstream="r1",state="closed"')).toBe(1);
    expect(sample(metrics, "llm_gateway_circuit_breaker_state", 'upstream="r1",state="open"')).toBe(0);
    const next: string[] = [];
    for (const q of ["a", "b", "c", "d", "e", "f"]) next.push((await served(gw, q)).upstream);
    expect(new Set(next)).toEqual(new Set(["r1", "r2", "r3"])); // r1 takes its share again
  });

  it("retries 429/5xx and stalls on another replica; relays 4xx as-is; relays the last error when all fail", async () => {
    const [r1, r2] = await replicas(2);
    const gw = await gateway([r1!, r2!], { firstByteTimeoutMs: 300 });
    await r1!.setFaults({ rateLimitRate: 1 });
    expect(await served(gw, "a")).toEqual({ upstream: "r2", status: 200 });

    await r1!.setFaults({ rateLimitRate: 0, stallRate: 1, stallMs: 0 });
    const fresh = await gateway([r1!, r2!], { firstByteTimeoutMs: 300 }); // its first pick is r1
    const t0 = Date.now();
    const stalledStream = await client(fresh).chat.completions.create({
      model: "sim-1",
      messages: user("s"),
      stream: true,
    });
    let text = "";
    for await (const ch of stalledStream) text += ch.choices[0]?.delta.content ?? "";
    expect(text).toContain("quick brown fox");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(
      sample(await fresh.metricsText(), "llm_gateway_retries_total", 'upstream="r1",reason="timeout"'),
    ).toBe(1);

    await r1!.setFaults({ stallRate: 0 });
    const bad = await fetch(`${gw.url}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ messages: [] }),
    });
    expect(bad.status).toBe(400); // the replica's own 400, relayed as-is
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("invalid_request");
    const m400 = await gw.metricsText();
    const attempts400 =
      sample(m400, "llm_gateway_upstream_requests_total", 'upstream="r1",status="400"') +
      sample(m400, "llm_gateway_upstream_requests_total", 'upstream="r2",status="400"');
    expect(attempts400).toBe(1); // one attempt, no retry

    await r1!.setFaults({ errorRate: 1, errorStatus: 503 });
    await r2!.setFaults({ errorRate: 1, errorStatus: 503 });
    const err = await client(gw)
      .chat.completions.create({ model: "sim-1", messages: user("doomed") })
      .catch((e) => e);
    expect(err.status).toBe(503);
    expect(err.message).toContain("injected server error");
    expect(sample(await gw.metricsText(), "llm_gateway_retries_exhausted_total")).toBe(1);
  });

  it("applies back-pressure: 429 with Retry-After when the queue is full", async () => {
    const [r1] = await replicas(1, ["--ttft-ms", "400"]);
    const gw = await gateway([r1!], { admission: { maxConcurrent: 2, maxQueue: 1 } });
    const send = () =>
      fetch(`${gw.url}/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "sim-1", messages: user("x"), stream: true }),
      });
    const first = [send(), send()];
    await until(async () => (await r1!.metric("sglang:num_running_reqs")) === 2, 5000, "2 running");
    const queued = send();
    await until(
      async () => sample(await gw.metricsText(), "llm_gateway_queue_depth") === 1,
      5000,
      "1 queued",
    );
    const refused = await send();
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("queue_full");
    const ok = await Promise.all([...first, queued]);
    expect(ok.map((r) => r.status)).toEqual([200, 200, 200]);
    await Promise.all(ok.map((r) => r.text()));
    await expect(
      new OpenAI({ baseURL: gw.url, apiKey: "x", maxRetries: 0 }).chat.completions.create({
        model: "sim-1",
        messages: user("fine now"),
      }),
    ).resolves.toBeTruthy();
    expect(sample(await gw.metricsText(), "llm_gateway_rejected_total", 'reason="queue_full"')).toBe(1);
  });

  it("adds, drains and removes upstreams at run time without dropping in-flight requests", async () => {
    const [r1, r2] = await replicas(2, ["--tps", "100"], "a"); // a 32-token reply streams for ~300 ms
    const ADMIN = "admin-token-for-tests-0123456789";
    const gw = await gateway([r1!, r2!], { adminToken: ADMIN });
    const adminCall = (method: string, path: string, body?: unknown) =>
      fetch(gw.url.replace("/v1", path), {
        method,
        headers: { authorization: `Bearer ${ADMIN}` },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    const stream = async (text: string) => {
      const { data: s, response } = await client(gw)
        .chat.completions.create({ model: "sim-1", messages: user(text), stream: true })
        .withResponse();
      let out = "";
      for await (const ch of s) out += ch.choices[0]?.delta.content ?? "";
      return { upstream: response.headers.get(UPSTREAM_HEADER), out };
    };
    const inflight = stream("long one"); // round robin: a1
    await until(async () => (await r1!.metric("sglang:num_running_reqs")) === 1, 5000, "a1 busy");
    const drain = await adminCall("POST", "/admin/upstreams/a1/drain");
    expect(((await drain.json()) as { mode: string }).mode).toBe("draining");
    const during = await Promise.all([served(gw, "x"), served(gw, "y")]);
    expect(during.map((d) => d.upstream)).toEqual(["a2", "a2"]);
    const finished = await inflight;
    expect(finished.upstream).toBe("a1");
    expect(finished.out).toHaveLength(128); // the whole synthetic reply

    const [r3] = await replicas(1, [], "a3-");
    const added = await adminCall("POST", "/admin/upstreams", { name: "a3", endpoint: r3!.url });
    expect(added.status).toBe(201);
    expect((await adminCall("POST", "/admin/upstreams", { name: "a3", endpoint: r3!.url })).status).toBe(409);
    expect((await adminCall("POST", "/admin/upstreams", { name: "bad name", endpoint: "nope" })).status).toBe(
      400,
    );
    const spread = await Promise.all([served(gw, "1"), served(gw, "2"), served(gw, "3"), served(gw, "4")]);
    expect(new Set(spread.map((s) => s.upstream))).toEqual(new Set(["a2", "a3"]));

    const onA2 = stream("long two");
    await until(async () => (await r2!.metric("sglang:num_running_reqs")) === 1, 5000, "a2 busy");
    const removed = await adminCall("DELETE", "/admin/upstreams/a2?wait=true");
    expect(await removed.json()).toEqual({ name: "a2", removed: true, inflightAtRemoval: 1 });
    const done = await onA2;
    expect(done).toEqual({ upstream: "a2", out: expect.stringMatching(/^The quick brown fox/) });
    expect(done.out).toHaveLength(128);
    expect((await served(gw, "z")).upstream).toBe("a3");
    expect(gw.upstreams.list().map((u) => [u.name, u.mode])).toEqual([
      ["a1", "draining"],
      ["a3", "active"],
    ]);
    await adminCall("POST", "/admin/upstreams/a1/resume");
    const both = await Promise.all([served(gw, "p"), served(gw, "q")]);
    expect(new Set(both.map((b) => b.upstream))).toEqual(new Set(["a1", "a3"]));
    expect((await adminCall("DELETE", "/admin/upstreams/nope")).status).toBe(404);
  });
});

describe("llm-gateway model-aware routing (real sim-llm replica processes)", () => {
  it("sends a model only to the replicas serving it, lists every model, and answers 404 for an unknown one", async () => {
    const [big, small, any] = await replicas(3, ["--tps", "5000"], "m");
    const upstreams = [
      { name: "big", endpoint: big!.url, models: ["glm-5"] },
      { name: "small", endpoint: small!.url, models: ["glm-4.5-air"] },
    ];
    const ask = async (gw: Gateway, model: string) => {
      const res = await fetch(`${gw.url}/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model, messages: user(`hello ${model}`) }),
      });
      const body = (await res.json()) as { error?: { code: string; message: string } };
      return { status: res.status, upstream: res.headers.get(UPSTREAM_HEADER), error: body.error };
    };

    const gw = await gateway([], { upstreams: [...upstreams, { name: "any", endpoint: any!.url }] });
    const seen = { "glm-5": new Set<string>(), "glm-4.5-air": new Set<string>(), other: new Set<string>() };
    for (let i = 0; i < 6; i++) {
      seen["glm-5"].add((await ask(gw, "glm-5")).upstream!);
      seen["glm-4.5-air"].add((await ask(gw, "glm-4.5-air")).upstream!);
      seen.other.add((await ask(gw, "some-other-model")).upstream!);
    }
    expect(seen["glm-5"]).toEqual(new Set(["big", "any"]));
    expect(seen["glm-4.5-air"]).toEqual(new Set(["small", "any"]));
    expect(seen.other).toEqual(new Set(["any"])); // only the replica without a model list takes anything
    const list = (await (await fetch(`${gw.url}/models`)).json()) as { data: { id: string }[] };
    expect(list.data.map((m) => m.id).sort()).toEqual(["glm-4.5-air", "glm-5", "sim-1"]); // sim-1: from "any"

    const strict = await gateway([], { upstreams });
    const unknown = await ask(strict, "some-other-model");
    expect(unknown.status).toBe(404);
    expect(unknown.error?.code).toBe("model_not_found");
    expect(unknown.error?.message).toContain("glm-5");
    expect((await fetch(`${strict.url}/models/glm-5`)).status).toBe(200);
    expect((await fetch(`${strict.url}/models/nope`)).status).toBe(404);
    // A served model whose only replica is drained: 503 (retry later), not 404.
    await strict.upstreams.drain("small");
    const drained = await ask(strict, "glm-4.5-air");
    expect(drained.status).toBe(503);
    expect(drained.error?.code).toBe("no_upstream_available");
  });
});
