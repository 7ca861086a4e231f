import OpenAI from "openai";
import { afterAll, describe, expect, it } from "vitest";
import {
  startGatewayProcess,
  startReplica,
  type TestGatewayProcess,
  type TestReplica,
  until,
} from "./replicas.ts";

const KEYS = ["sk-provider-key-AAAA-0001", "sk-provider-key-BBBB-0002", "sk-provider-key-CCCC-0003"];
const LATE_KEY = "sk-provider-key-DDDD-0004";
const ADMIN = "admin-token-keys-test-0123456789";

const replicas: TestReplica[] = [];
let gateway: TestGatewayProcess | undefined;
afterAll(async () => {
  await gateway?.kill();
  await Promise.all(replicas.map((r) => r.stop()));
});

describe("provider keys never reach the logs (gateway as a real process, main.ts)", () => {
  it("uses the keys upstream, and its whole log output (trace level) contains none of them", async () => {
    for (let i = 0; i < 3; i++) replicas.push(await startReplica(`k${i + 1}`, ["--tps", "5000"], KEYS[i]));
    const gw = await startGatewayProcess(
      {
        LLM_ENDPOINTS: JSON.stringify(
          replicas.map((r, i) => ({ name: r.name, endpoint: r.url, apiKey: KEYS[i] })),
        ),
        GATEWAY_ADMIN_TOKEN: ADMIN,
        GATEWAY_PORT: "0",
        // Slow enough that requests reach the killed replica (and log its connection errors) before two failed
        // checks take it out of rotation: at 50 ms a loaded CI machine's checks got there first.
        GATEWAY_HEALTH_INTERVAL_MS: "1000",
        GATEWAY_HEALTH_MODE: "models", // health checks send the key too
        LOG_LEVEL: "trace",
        GATEWAY_POLICY: "round_robin", // spread over every replica, the late one included
        GATEWAY_SESSION_AFFINITY: "false",
      },
      ADMIN,
    );
    gateway = gw;
    const { url, output } = gw;
    const adminFetch = gw.admin;
    const { token } = (await (
      await adminFetch("POST", "/admin/tokens", { runId: "keys", taskId: "t" })
    ).json()) as {
      token: string;
    };
    const client = new OpenAI({ baseURL: url, apiKey: token, maxRetries: 0 });
    const ask = (text: string, stream: boolean) =>
      stream
        ? client.chat.completions
            .create({ model: "sim-1", messages: [{ role: "user", content: text }], stream: true })
            .then(async (s) => {
              let out = "";
              for await (const c of s) out += c.choices[0]?.delta.content ?? "";
              return out;
            })
        : client.chat.completions
            .create({ model: "sim-1", messages: [{ role: "user", content: text }] })
            .then((r) => r.choices[0]!.message.content ?? "");
    // Every replica answers 401 without its key, so these succeeding proves the gateway sent the keys.
    const answers = await Promise.all(Array.from({ length: 9 }, (_, i) => ask(`q${i}`, i % 2 === 0)));
    expect(answers.every((a) => a.startsWith("The quick brown fox"))).toBe(true);

    // Failures get logged too: a failing replica (retries), a dead one (connection errors, health checks).
    await replicas[0]!.setFaults({ errorRate: 1 });
    await replicas[1]!.kill();
    await Promise.all(Array.from({ length: 6 }, (_, i) => ask(`f${i}`, false)));
    // An upstream added at run time with a new key.
    const late = await startReplica("k4", [], LATE_KEY);
    replicas.push(late);
    expect(
      (await adminFetch("POST", "/admin/upstreams", { name: "k4", endpoint: late.url, apiKey: LATE_KEY }))
        .status,
    ).toBe(201);
    await until(
      async () => {
        if ((await late.metric("sglang:num_requests_total")) > 0) return true;
        await ask("late", false);
        return false;
      },
      5000,
      "k4 used",
    );
    const listing = await (await adminFetch("GET", "/admin/upstreams")).text();
    const metrics = await (await fetch(url.replace("/v1", "/metrics"))).text();

    expect(await gw.stop()).toBe(0);
    const all = output.join("\n");
    expect(all).toContain("upstream connection error"); // debug lines about the dead replica were written
    expect(all).toContain("retrying");
    for (const key of [...KEYS, LATE_KEY, ADMIN]) {
      expect(all).not.toContain(key);
      expect(listing).not.toContain(key);
      expect(metrics).not.toContain(key);
    }
    expect(all).not.toContain(token);
  });
});
