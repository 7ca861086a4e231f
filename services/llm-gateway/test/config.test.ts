import { ConfigError } from "@longshot/config";
import { describe, expect, it } from "vitest";
import { gatewayOptionsFromEnv } from "../src/index.ts";

describe("gateway configuration", () => {
  it("reads LLM_ENDPOINTS and the GATEWAY_* variables", () => {
    const o = gatewayOptionsFromEnv({
      LLM_ENDPOINTS: JSON.stringify([
        { name: "a", endpoint: "http://a:30000/v1", apiKey: "k-a", weight: 2 },
        { name: "b", endpoint: "http://b:30000/v1", models: ["glm-4.5-air"] },
      ]),
      GATEWAY_ADMIN_TOKEN: "admin-token-0123456789",
      GATEWAY_PORT: "0",
      GATEWAY_POLICY: "round_robin",
      GATEWAY_SESSION_AFFINITY: "false",
      GATEWAY_PRICES: JSON.stringify({ "glm-5": { inputPerMTok: 1, outputPerMTok: 2 } }),
      GATEWAY_HEALTH_INTERVAL_MS: "0",
    });
    expect(o.upstreams).toEqual([
      { name: "a", endpoint: "http://a:30000/v1", apiKey: "k-a", weight: 2 },
      { name: "b", endpoint: "http://b:30000/v1", weight: 1, models: ["glm-4.5-air"] },
    ]);
    expect(o).toMatchObject({
      port: 0,
      policy: "round_robin",
      sessionAffinity: false,
      auth: "tokens",
      health: false,
    });
    expect(o.prices).toEqual({ "glm-5": { inputPerMTok: 1, outputPerMTok: 2 } });
  });

  it("falls back to LLM_BASE_URL / LLM_API_KEY with defaults", () => {
    const o = gatewayOptionsFromEnv({
      LLM_BASE_URL: "http://sglang:30000/v1",
      LLM_API_KEY: "sk-x",
      GATEWAY_AUTH: "open",
    });
    expect(o.upstreams).toEqual([
      { name: "default", endpoint: "http://sglang:30000/v1", apiKey: "sk-x", weight: 1 },
    ]);
    expect(o).toMatchObject({ port: 4000, policy: "cache_aware", sessionAffinity: true, auth: "open" });
    expect(o.health).toEqual({ intervalMs: 5000, mode: "health" });
  });

  it("lists every problem at once", () => {
    let err: unknown;
    try {
      gatewayOptionsFromEnv({
        LLM_ENDPOINTS: JSON.stringify([
          { name: "a", endpoint: "nope" },
          { name: "a", endpoint: "http://x/v1" },
        ]),
        GATEWAY_PORT: "99999",
        GATEWAY_POLICY: "random",
        GATEWAY_ADMIN_TOKEN: "short",
        GATEWAY_PRICES: "{",
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join("\n");
    expect(problems).toContain("LLM_ENDPOINTS.0.endpoint");
    expect(problems).toContain("GATEWAY_PORT");
    expect(problems).toContain("GATEWAY_POLICY");
    expect(problems).toContain("GATEWAY_ADMIN_TOKEN");
    expect(problems).toContain("GATEWAY_PRICES");
  });

  it("needs an admin token in tokens mode and an upstream source", () => {
    expect(() => gatewayOptionsFromEnv({})).toThrow(/GATEWAY_ADMIN_TOKEN[\s\S]*|LLM_ENDPOINTS/);
    try {
      gatewayOptionsFromEnv({});
    } catch (e) {
      expect((e as ConfigError).problems.length).toBe(2);
    }
  });
});
