import { connectBus } from "@longshot/bus";
import { createLogger } from "@longshot/log";
import { startTestNats, type TestNats } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsLedgerStore, type RunUsage } from "../src/index.ts";
import { startGatewayProcess, startReplicas, type TestGatewayProcess, type TestReplica } from "./replicas.ts";

const ADMIN = "admin-token-store-test-0123456789";
let nats: TestNats;
let replicas: TestReplica[] = [];
const gateways: TestGatewayProcess[] = [];

beforeAll(async () => {
  nats = await startTestNats();
  replicas = await startReplicas(2, ["--tps", "5000", "--ttft-ms", "300"], "s");
});

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.kill()));
  await Promise.all(replicas.map((r) => r.stop()));
  await nats?.stop();
});

async function gateway(): Promise<TestGatewayProcess> {
  const gw = await startGatewayProcess(
    {
      LLM_ENDPOINTS: JSON.stringify(replicas.map((r) => ({ name: r.name, endpoint: r.url }))),
      GATEWAY_ADMIN_TOKEN: ADMIN,
      GATEWAY_PORT: "0",
      GATEWAY_USAGE_FLUSH_MS: "50",
      NATS_URL: nats.url,
      LOG_LEVEL: "info",
    },
    ADMIN,
  );
  gateways.push(gw);
  return gw;
}

/** POSTs one small chat completion with a gateway token. */
async function ask(gw: TestGatewayProcess, token: string, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${gw.url}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "sim-1", messages: [{ role: "user", content: "hello" }], ...extra }),
  });
  const body = (await res.json()) as { error?: { code: string; message: string } };
  return {
    status: res.status,
    code: body.error?.code,
    message: body.error?.message,
    retryAfter: res.headers.get("retry-after"),
  };
}

async function issue(gw: TestGatewayProcess, grant: Record<string, unknown>): Promise<string> {
  const res = await gw.admin("POST", "/admin/tokens", grant);
  expect(res.status).toBe(201);
  return ((await res.json()) as { token: string }).token;
}

async function usage(gw: TestGatewayProcess, runId: string): Promise<RunUsage | undefined> {
  const res = await gw.admin("GET", `/admin/usage?runId=${runId}`);
  return ((await res.json()) as { runs: RunUsage[] }).runs[0];
}

describe("llm-gateway with NATS KV: tokens and usage survive restarts (real gateway processes)", () => {
  it("accepts tokens issued before a SIGKILL, keeps counting usage and budgets, and revokes across restarts", async () => {
    const first = await gateway();
    const worker = await issue(first, { runId: "run-kv", taskId: "t1", role: "worker" });
    const small = await issue(first, { runId: "run-kv", taskId: "t-small", role: "worker", budgetTokens: 5 });
    expect((await ask(first, worker)).status).toBe(200);
    expect((await ask(first, worker)).status).toBe(200);
    expect((await ask(first, small)).status).toBe(200); // a lone request runs while the budget is not used up
    expect(await ask(first, small)).toMatchObject({ status: 429, code: "budget_exceeded" });
    const before = (await usage(first, "run-kv"))!;
    expect(before.requests).toBe(3);
    await new Promise((r) => setTimeout(r, 300)); // > GATEWAY_USAGE_FLUSH_MS
    await first.kill();

    const second = await gateway();
    // The token issued by the killed process still works, and the usage it counted is still there.
    expect((await ask(second, worker)).status).toBe(200);
    const after = (await usage(second, "run-kv"))!;
    expect(after.requests).toBe(4);
    expect(after.totalTokens).toBeGreaterThan(before.totalTokens);
    expect(after.byTask.t1!.requests).toBe(3);
    // The used-up budget stays used up.
    expect(await ask(second, small)).toMatchObject({ status: 429, code: "budget_exceeded" });

    const late = await issue(second, { runId: "run-kv", taskId: "t2" });
    const unseen = await issue(second, { runId: "run-kv", taskId: "t3" });
    expect((await second.admin("DELETE", "/admin/tokens", { token: worker })).status).toBe(200);
    expect((await ask(second, worker)).status).toBe(401);
    expect(await second.stop()).toBe(0);

    const third = await gateway();
    expect((await ask(third, worker)).status).toBe(401); // revoked in the store, not only in memory
    expect((await ask(third, late)).status).toBe(200);
    // Revoking a token this process has never seen (issued by the previous one).
    expect((await third.admin("DELETE", "/admin/tokens", { token: unseen })).status).toBe(200);
    expect((await ask(third, unseen)).status).toBe(401);
    expect((await third.admin("DELETE", "/admin/tokens", { token: "lsg_never-issued" })).status).toBe(404);
    const final = (await usage(third, "run-kv"))!;
    expect(final.requests).toBe(5);
    expect(third.output.join("\n")).not.toContain(late);
  });

  it("lets two gateway processes share the store: tokens of one work on the other, usage adds up", async () => {
    const [a, b] = [await gateway(), await gateway()];
    const token = await issue(a, { runId: "run-shared", taskId: "t1", role: "worker" });
    const results = await Promise.all([
      ...[0, 1, 2].map(() => ask(a, token)),
      ...[0, 1].map(() => ask(b, token)), // b reads the grant from KV
    ]);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const bus = await connectBus({
      servers: nats.url,
      name: "store-test",
      log: createLogger({ service: "test", level: "warn" }),
    });
    try {
      const store = await natsLedgerStore(bus);
      // Both flush every 50 ms and add (compare-and-set) to one record: nothing is overwritten.
      const deadline = Date.now() + 5000;
      let stored = (await store.getUsage("run-shared"))?.usage;
      while ((stored?.requests ?? 0) < 5 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        stored = (await store.getUsage("run-shared"))?.usage;
      }
      expect(stored).toMatchObject({ requests: 5, byTask: { t1: { requests: 5 } } });
      await new Promise((r) => setTimeout(r, 200));
      expect((await store.getUsage("run-shared"))!.usage.requests).toBe(5); // and nothing counted twice
      // Each process watches the records: both see all 5 requests without serving another one.
      expect((await usage(a, "run-shared"))!.requests).toBe(5);
      expect((await usage(b, "run-shared"))!.requests).toBe(5);
      // A budget set through one process holds on the other: b refuses once a's usage used it up.
      const capped = await issue(a, { runId: "run-shared", taskId: "t2", budgetTokens: 1 });
      expect((await ask(a, capped)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 300)); // a's flush reaches b through the watch
      expect(await ask(b, capped)).toMatchObject({ status: 429, code: "budget_exceeded" });
    } finally {
      await bus.close();
    }
  });

  it("refuses concurrent requests of one task that would overshoot its budget together, with Retry-After", async () => {
    const gw = await gateway();
    // Each request is estimated at ≈ 30 prompt tokens + its max_tokens (200): the budget fits one in flight.
    const token = await issue(gw, { runId: "run-conc", taskId: "t1", budgetTokens: 300 });
    const results = await Promise.all([0, 1, 2].map(() => ask(gw, token, { max_tokens: 200 })));
    const ok = results.filter((r) => r.status === 200);
    const held = results.filter((r) => r.status === 429);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(held.length).toBeGreaterThanOrEqual(1);
    for (const r of held) {
      expect(r.code).toBe("budget_reserved");
      expect(r.retryAfter).toBe("1");
      expect(r.message).toContain("in flight");
    }
    // Once the first finished, the task may go on (its budget is not used up).
    const u = (await usage(gw, "run-conc"))!;
    expect(u.byTask.t1!.totalTokens).toBeLessThan(300);
    expect((await ask(gw, token, { max_tokens: 200 })).status).toBe(200);
  });
});
