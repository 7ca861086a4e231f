import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI, { AuthenticationError, RateLimitError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway, TASK_ID_HEADER, UPSTREAM_HEADER } from "../src/index.ts";
import { sample, startReplicas, type TestReplica } from "./replicas.ts";

const WRITE_ARGS = {
  path: "src/users.ts",
  content: 'export const users = new Map<string, { name: string }>();\n// "quotes" ✓ 😀\n',
};
const script = {
  model: "glm-5",
  conversations: [
    {
      name: "worker",
      match: { system: "You are a worker" },
      turns: [
        {
          content: "Writing the file.",
          toolCalls: [
            { id: "call_write_1", name: "write", arguments: WRITE_ARGS },
            { id: "call_bash_1", name: "bash", arguments: { command: "node --test" } },
          ],
        },
        { content: "Done. All tests pass." },
      ],
    },
    { name: "fallback", turns: [{ content: "Hello from a replica of the simulated model." }] },
  ],
};

const ADMIN = "admin-token-for-tests-0123456789";
const PRICES = { "glm-5": { inputPerMTok: 1, cachedInputPerMTok: 0.1, outputPerMTok: 3 } };
let dir: string;
let replicas: TestReplica[];
let gw: Gateway;
const logs: string[] = [];

const workerMessages = (
  extra: OpenAI.ChatCompletionMessageParam[] = [],
): OpenAI.ChatCompletionMessageParam[] => [
  { role: "system", content: "You are a worker. Use the tools." },
  { role: "user", content: "## Task: users-store\nCreate the users store." },
  ...extra,
];
const tools: OpenAI.ChatCompletionTool[] = [
  {
    type: "function",
    function: { name: "write", description: "write a file", parameters: { type: "object", properties: {} } },
  },
  {
    type: "function",
    function: { name: "bash", description: "run a command", parameters: { type: "object", properties: {} } },
  },
];

function clientFor(token: string, headers: Record<string, string> = {}): OpenAI {
  return new OpenAI({ baseURL: gw.url, apiKey: token, maxRetries: 0, defaultHeaders: headers });
}

async function admin(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(gw.url.replace("/v1", path), {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

async function issue(grant: Record<string, unknown>): Promise<string> {
  const res = await admin("POST", "/admin/tokens", grant);
  expect(res.status).toBe(201);
  return ((await res.json()) as { token: string }).token;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llm-gateway-api-"));
  const scriptPath = join(dir, "script.json");
  await writeFile(scriptPath, JSON.stringify(script));
  replicas = await startReplicas(3, ["--script", scriptPath, "--tps", "2000"]);
  gw = await startGateway({
    upstreams: replicas.map((r) => ({ name: r.name, endpoint: r.url })),
    adminToken: ADMIN,
    prices: PRICES,
    logLevel: "debug",
    logDestination: { write: (l) => void logs.push(l) },
    health: { intervalMs: 200 },
    maxBodyBytes: 256 * 1024,
  });
});

afterAll(async () => {
  await gw?.close();
  await Promise.all((replicas ?? []).map((r) => r.stop()));
  await rm(dir, { recursive: true, force: true });
});

describe("llm-gateway API with the openai SDK in front of 3 sim-llm replicas", () => {
  it("serves non-streaming completions with tool calls intact and usage", async () => {
    const client = clientFor(await issue({ runId: "run-api", taskId: "t-nonstream", role: "worker" }));
    const res = await client.chat.completions.create({ model: "glm-5", messages: workerMessages(), tools });
    const msg = res.choices[0]!.message;
    expect(res.choices[0]!.finish_reason).toBe("tool_calls");
    expect(msg.content).toBe("Writing the file.");
    expect(msg.tool_calls).toEqual([
      {
        id: "call_write_1",
        type: "function",
        function: { name: "write", arguments: JSON.stringify(WRITE_ARGS) },
      },
      {
        id: "call_bash_1",
        type: "function",
        function: { name: "bash", arguments: JSON.stringify({ command: "node --test" }) },
      },
    ]);
    expect(res.usage!.prompt_tokens).toBeGreaterThan(0);
  });

  it("streams tool calls the SDK reassembles exactly, and relays the replica's SSE bytes unchanged", async () => {
    const token = await issue({ runId: "run-api", taskId: "t-stream", role: "worker" });
    const client = clientFor(token);
    const s = client.chat.completions.stream({
      model: "glm-5",
      messages: workerMessages(),
      tools,
      stream_options: { include_usage: true },
    });
    const final = await s.finalChatCompletion();
    expect(
      final.choices[0]!.message.tool_calls!.map((t) =>
        t.type === "function" ? [t.id, t.function.name, t.function.arguments] : [t.id],
      ),
    ).toEqual([
      ["call_write_1", "write", JSON.stringify(WRITE_ARGS)],
      ["call_bash_1", "bash", JSON.stringify({ command: "node --test" })],
    ]);

    // Raw bytes: the same request straight to a replica and through the gateway, modulo id/created.
    const body = JSON.stringify({
      model: "glm-5",
      messages: workerMessages(),
      stream: true,
      stream_options: { include_usage: true },
    });
    const direct = await (
      await fetch(`${replicas[0]!.url}/chat/completions`, { method: "POST", body })
    ).text();
    const viaRes = await fetch(`${gw.url}/chat/completions`, {
      method: "POST",
      body,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    });
    expect(viaRes.headers.get("content-type")).toBe("text/event-stream");
    expect(viaRes.headers.get(UPSTREAM_HEADER)).toMatch(/^r[123]$/);
    const via = await viaRes.text();
    const norm = (t: string) =>
      t
        .replace(/"id":"chatcmpl-[0-9a-f]+"/g, '"id":"X"')
        .replace(/"created":\d+/g, '"created":0')
        .replace(/"cached_tokens":\d+/g, '"cached_tokens":0');
    expect(norm(via)).toBe(norm(direct));
    expect(via).toContain('"usage"');
    expect(via.trimEnd().endsWith("data: [DONE]")).toBe(true);
  });

  it("counts usage of a stream that did not ask for it, without showing the client the usage chunk", async () => {
    const token = await issue({ runId: "run-nousage", taskId: "t1", role: "planner" });
    const res = await fetch(`${gw.url}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "glm-5", messages: [{ role: "user", content: "hello" }], stream: true }),
    });
    const text = await res.text();
    expect(text).not.toContain('"usage"');
    expect(text).toContain(`"content":"Hello from a rep"`);
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    const [usage] = await gw.usage("run-nousage");
    expect(usage).toMatchObject({ requests: 1, promptTokens: 2 });
    expect(usage!.completionTokens).toBe(
      Math.ceil("Hello from a replica of the simulated model.".length / 4),
    );
    expect(usage!.byRole.planner!.requests).toBe(1);
  });

  it("accounts tokens and cost per run, task, role and model over the admin API", async () => {
    const token = await issue({ runId: "run-cost", taskId: "t-a", role: "worker" });
    const client = clientFor(token);
    await client.chat.completions.create({ model: "glm-5", messages: workerMessages() });
    await client.chat.completions.create({
      model: "glm-5",
      messages: workerMessages([{ role: "assistant", content: "Writing the file." }]),
    });
    const res = await admin("GET", "/admin/usage?runId=run-cost");
    const { runs } = (await res.json()) as {
      runs: Array<Record<string, unknown> & { byTask: Record<string, { requests: number }> }>;
    };
    expect(runs).toHaveLength(1);
    const run = runs[0]!;
    expect(run.requests).toBe(2);
    expect(run.byTask["t-a"]!.requests).toBe(2);
    const p = run.promptTokens as number;
    const c = run.completionTokens as number;
    const cached = run.cachedTokens as number;
    expect(run.cost).toBeCloseTo(((p - cached) * 1 + cached * 0.1 + c * 3) / 1e6, 12);
    const metrics = await gw.metricsText();
    const tokensOf = (type: string) =>
      sample(metrics, "llm_gateway_tokens_total", `model="glm-5",role="worker",type="${type}"`);
    expect(tokensOf("uncached_prompt") + tokensOf("cached_prompt")).toBeGreaterThanOrEqual(p);
    expect(sample(metrics, "llm_gateway_cost_dollars_total", 'model="glm-5",role="worker"')).toBeGreaterThan(
      0,
    );
  });

  it("follows Prometheus conventions: standard process metrics with a service label, breaker state as a label, cost in dollars, nothing counted twice", async () => {
    const tokenSum = (text: string) =>
      ["uncached_prompt", "cached_prompt", "completion"].reduce(
        (sum, type) =>
          sum + sample(text, "llm_gateway_tokens_total", `model="glm-5",role="reviewer",type="${type}"`),
        0,
      );
    const before = await gw.metricsText();
    const client = clientFor(await issue({ runId: "run-conventions", taskId: "t-c", role: "reviewer" }));
    const history: OpenAI.ChatCompletionMessageParam[] = [
      { role: "system", content: `You review. ${"Shared review instructions. ".repeat(40)}` },
      { role: "user", content: "first look" },
    ];
    for (let turn = 0; turn < 3; turn++) {
      const res = await client.chat.completions.create({ model: "glm-5", messages: history });
      history.push({ role: "assistant", content: res.choices[0]!.message.content ?? "" });
      history.push({ role: "user", content: `turn ${turn}` });
    }
    const text = await gw.metricsText();
    // Node's default metrics keep their standard names and carry the service label; none is renamed.
    expect(text).toMatch(/^process_cpu_seconds_total\{service="llm-gateway"\} \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds\{service="llm-gateway"\} /m);
    expect(text).not.toMatch(/^llm_gateway_(process|nodejs)_/m);
    // Every series carries the service label.
    for (const line of text.split("\n").filter((l) => l && !l.startsWith("#")))
      expect(line, line).toContain('service="llm-gateway"');
    // The breaker state is a label: per upstream one series per state, exactly one of them 1.
    for (const upstream of ["r1", "r2", "r3"]) {
      const states = ["closed", "half_open", "open"].map((state) =>
        sample(text, "llm_gateway_circuit_breaker_state", `upstream="${upstream}",state="${state}"`),
      );
      expect(states).toEqual([1, 0, 0]);
    }
    // Cost carries its unit; cache hits are decisions, not a second counter.
    expect(text).toContain("# TYPE llm_gateway_cost_dollars_total counter");
    expect(text).not.toMatch(/^# TYPE llm_gateway_cost_total /m);
    expect(text).not.toMatch(/llm_gateway_cache_(hits|misses)_total/);
    expect(sample(text, "llm_gateway_policy_decisions_total", 'reason="cache_hit"')).toBeGreaterThan(0);
    // Token types partition the total: their sum over this run's calls is the run's total, cached included once.
    const [usage] = await gw.usage("run-conventions");
    expect(usage!.cachedTokens).toBeGreaterThan(0);
    expect(tokenSum(text) - tokenSum(before)).toBe(usage!.totalTokens);
  });

  it("accounts a service token's calls to the run its header names; task tokens cannot switch runs", async () => {
    const service = await issue({ runId: "cluster", role: "planner", anyRun: true });
    const worker = await issue({ runId: "run-own", taskId: "t-w", role: "worker" });
    const ask = (token: string, headers: Record<string, string>) =>
      new OpenAI({ baseURL: gw.url, apiKey: token, maxRetries: 0 }).chat.completions.create(
        { model: "glm-5", messages: workerMessages() },
        { headers },
      );
    await ask(service, { "x-longshot-run-id": "run-svc", "x-longshot-task-id": "planner" });
    await ask(service, {}); // no header: the token's own run
    await ask(worker, { "x-longshot-run-id": "run-svc" }); // ignored: a task token stays in its run
    const [svc] = await gw.usage("run-svc");
    expect(svc).toMatchObject({ requests: 1, byRole: { planner: { requests: 1 } } });
    expect(svc!.byTask).toEqual({});
    expect((await gw.usage("cluster"))[0]!.requests).toBe(1);
    expect((await gw.usage("run-own"))[0]!.byTask["t-w"]!.requests).toBe(1);
    const bad = await fetch(`${gw.url}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${service}`, "x-longshot-run-id": "../../etc" },
      body: JSON.stringify({ model: "glm-5", messages: workerMessages() }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("x-longshot-run-id");
  });

  it("refuses an over-budget task with a clear 429 budget_exceeded that the SDK does not retry", async () => {
    const token = await issue({ runId: "run-budget", taskId: "t-small", role: "worker", budgetTokens: 30 });
    const client = new OpenAI({ baseURL: gw.url, apiKey: token }); // default SDK retries (2) on
    await client.chat.completions.create({ model: "glm-5", messages: workerMessages() }); // crosses the budget
    const before = sample(await gw.metricsText(), "llm_gateway_budget_rejections_total", 'scope="task"');
    const t0 = Date.now();
    const err = await client.chat.completions
      .create({ model: "glm-5", messages: workerMessages() })
      .catch((e) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    expect(err.status).toBe(429);
    expect(err.code).toBe("budget_exceeded");
    expect(err.message).toMatch(
      /token budget exceeded for task t-small of run run-budget: used \d+ of 30 tokens/,
    );
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(sample(await gw.metricsText(), "llm_gateway_budget_rejections_total", 'scope="task"')).toBe(
      before + 1,
    );
    // Another task of the same run is not affected; a run budget stops every task of the run.
    const other = clientFor(await issue({ runId: "run-budget", taskId: "t-other" }));
    await other.chat.completions.create({ model: "glm-5", messages: [{ role: "user", content: "hi" }] });
    await issue({ runId: "run-budget", budgetTokens: 10 });
    const runErr = await other.chat.completions
      .create({ model: "glm-5", messages: [{ role: "user", content: "hi" }] })
      .catch((e) => e);
    expect(runErr.code).toBe("budget_exceeded");
    expect(runErr.message).toContain("for run run-budget");
  });

  it("answers a too-large or malformed body with a clear 4xx and keeps serving", async () => {
    const token = await issue({ runId: "run-body" });
    const post = (body: string) =>
      fetch(`${gw.url}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body,
      });
    const big = JSON.stringify({
      model: "glm-5",
      messages: [{ role: "user", content: "x".repeat(300_000) }],
    });
    const tooLarge = await post(big);
    expect(tooLarge.status).toBe(413);
    expect(((await tooLarge.json()) as { error: { code: string } }).error.code).toBe("request_too_large");
    const notJson = await post("{oops");
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: { code: string } }).error.code).toBe("invalid_json");
    const noMessages = await post(JSON.stringify({ model: "glm-5" }));
    expect(noMessages.status).toBe(400);
    const ok = await clientFor(token).chat.completions.create({
      model: "glm-5",
      messages: [{ role: "user", content: "hello after bad input" }],
    });
    expect(ok.choices[0]?.message).toBeDefined();
  });

  it("refuses a token after its ttl, saying it expired", async () => {
    const res = await admin("POST", "/admin/tokens", { runId: "run-ttl", taskId: "t", ttlMs: 300 });
    const issued = (await res.json()) as { token: string; expiresAt: number };
    expect(issued.expiresAt).toBeGreaterThan(Date.now());
    const ask = () =>
      fetch(`${gw.url}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${issued.token}` },
        body: JSON.stringify({ model: "glm-5", messages: [{ role: "user", content: "hi" }] }),
      });
    expect((await ask()).status).toBe(200);
    await new Promise((r) => setTimeout(r, Math.max(0, issued.expiresAt - Date.now()) + 50));
    const late = await ask();
    expect(late.status).toBe(401);
    expect(await late.text()).toContain("expired gateway token");
    expect((await ask()).status).toBe(401); // forgotten: now simply unknown
  });

  it("needs a gateway token on /v1 and the admin token on /admin", async () => {
    const bad = clientFor("lsg_not-a-real-token");
    await expect(
      bad.chat.completions.create({ model: "glm-5", messages: [{ role: "user", content: "x" }] }),
    ).rejects.toBeInstanceOf(AuthenticationError);
    const noAuth = await fetch(`${gw.url}/chat/completions`, { method: "POST", body: "{}" });
    expect(noAuth.status).toBe(401);
    const wrongAdmin = await fetch(gw.url.replace("/v1", "/admin/upstreams"), {
      headers: { authorization: "Bearer nope" },
    });
    expect(wrongAdmin.status).toBe(401);
    const revoked = await issue({ runId: "run-revoke" });
    expect((await admin("DELETE", "/admin/tokens", { token: revoked })).status).toBe(200);
    await expect(clientFor(revoked).models.list()).rejects.toBeInstanceOf(AuthenticationError);
  });

  it("serves /v1/models, /healthz, /readyz and /metrics", async () => {
    const client = clientFor(await issue({ runId: "run-misc" }));
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["glm-5"]);
    const health = (await (await fetch(gw.url.replace("/v1", "/healthz"))).json()) as Record<string, unknown>;
    expect(health).toEqual({ status: "ok", upstreams: { total: 3, eligible: 3 } });
    expect((await fetch(gw.url.replace("/v1", "/readyz"))).status).toBe(200);
    const metricsRes = await fetch(gw.url.replace("/v1", "/metrics"));
    expect(metricsRes.headers.get("content-type")).toContain("text/plain");
    const text = await metricsRes.text();
    for (const name of [
      "llm_gateway_requests_total",
      "llm_gateway_upstream_requests_total",
      "llm_gateway_request_duration_seconds",
      "llm_gateway_ttft_seconds",
      "llm_gateway_circuit_breaker_state",
      "llm_gateway_active_requests",
      "llm_gateway_policy_decisions_total",
      "llm_gateway_tokens_total",
      "llm_gateway_cost_dollars_total",
      "llm_gateway_upstream_healthy",
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });

  it("keeps a task on one replica (session affinity) and an agent loop on the replica holding its prefix", async () => {
    const token = await issue({ runId: "run-aff" });
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${gw.url}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, [TASK_ID_HEADER]: "task-42" },
        body: JSON.stringify({
          model: "glm-5",
          messages: [{ role: "user", content: `question ${i} ${"z".repeat(i * 50)}` }],
        }),
      });
      await res.text();
      seen.add(res.headers.get(UPSTREAM_HEADER)!);
    }
    expect(seen.size).toBe(1);

    // Without a task id, cache-aware routing follows the growing prefix of one agent loop.
    const client = clientFor(await issue({ runId: "run-prefix" }));
    const history: OpenAI.ChatCompletionMessageParam[] = [
      { role: "system", content: `You are agent 7. ${"Long shared instructions. ".repeat(40)}` },
      { role: "user", content: `Task 7: ${"details ".repeat(30)}` },
    ];
    const where = new Set<string>();
    const cacheHits = async () =>
      sample(await gw.metricsText(), "llm_gateway_policy_decisions_total", 'reason="cache_hit"');
    const before = await cacheHits();
    for (let turn = 0; turn < 5; turn++) {
      const { data, response } = await client.chat.completions
        .create({ model: "glm-5", messages: history })
        .withResponse();
      where.add(response.headers.get(UPSTREAM_HEADER)!);
      history.push({ role: "assistant", content: data.choices[0]!.message.content ?? "" });
      history.push({ role: "user", content: `next step ${turn}` });
    }
    expect(where.size).toBe(1);
    expect((await cacheHits()) - before).toBe(4);
  });

  it("answers 404 for every action on an unknown upstream (and the process keeps serving)", async () => {
    for (const [method, path] of [
      ["GET", "/admin/upstreams/nope"],
      ["DELETE", "/admin/upstreams/nope"],
      ["POST", "/admin/upstreams/nope/drain"],
      ["POST", "/admin/upstreams/nope/resume"],
    ] as const) {
      const res = await admin(method, path);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("unknown_upstream");
    }
    await new Promise((r) => setTimeout(r, 20)); // an unhandled rejection would surface here
    expect((await fetch(gw.url.replace("/v1", "/healthz"))).status).toBe(200);
  });

  it("never logs or returns provider keys or tokens (admin listing is secret-free)", async () => {
    const res = await admin("GET", "/admin/upstreams");
    const { upstreams } = (await res.json()) as { upstreams: Array<Record<string, unknown>> };
    expect(upstreams.map((u) => u.name)).toEqual(["r1", "r2", "r3"]);
    expect(upstreams[0]).toMatchObject({
      healthy: true,
      breaker: "closed",
      mode: "active",
      hasApiKey: false,
    });
    expect(Object.keys(upstreams[0]!)).not.toContain("apiKey");
    const joined = logs.join("");
    expect(joined).toContain("request served");
    expect(joined).not.toMatch(/lsg_[A-Za-z0-9_-]{20,}/);
    expect(joined).not.toContain(ADMIN);
  });
});
