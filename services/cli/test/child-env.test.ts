import { describe, expect, it } from "vitest";
import { natsServerEnv, serviceEnv } from "../src/child-env.ts";

const config = {
  PATH: "/usr/bin",
  HOME: "/home/u",
  LLM_BASE_URL: "https://provider/v1",
  LLM_API_KEY: "sk-provider-key",
  LLM_ENDPOINTS: '[{"name":"a","endpoint":"https://p/v1","apiKey":"sk-2"}]',
  LLM_MODEL: "glm-5",
  GIT_TOKEN: "ghp_token",
  SANDBOX_PROVIDER: "local",
  SWEEP_TEST_CMD: "npm test",
  GATEWAY_PRICES: "{}",
  AWS_SECRET_ACCESS_KEY: "aws",
  MERGE_STRATEGY: "rebase",
  LC_ALL: "C.UTF-8",
};

describe("embedded cluster child environments", () => {
  it("gives the provider keys to the gateway only", () => {
    for (const svc of ["planner", "subplanner", "dispatcher", "merger", "reconciler", "monitor"]) {
      const env = serviceEnv(svc, config, { NATS_URL: "nats://x" });
      expect(env.LLM_API_KEY, svc).toBeUndefined();
      expect(env.LLM_ENDPOINTS, svc).toBeUndefined();
      expect(env.AWS_SECRET_ACCESS_KEY, svc).toBeUndefined();
      expect(env).toMatchObject({ PATH: "/usr/bin", LC_ALL: "C.UTF-8", NATS_URL: "nats://x" });
    }
    expect(serviceEnv("llm-gateway", config, {})).toMatchObject({
      LLM_API_KEY: "sk-provider-key",
      LLM_ENDPOINTS: config.LLM_ENDPOINTS,
      GATEWAY_PRICES: "{}",
    });
  });

  it("gives each service its own settings and the cluster's on top", () => {
    const dispatcher = serviceEnv("dispatcher", config, { LLM_API_KEY: "gateway-token" });
    expect(dispatcher).toMatchObject({
      GIT_TOKEN: "ghp_token",
      SANDBOX_PROVIDER: "local",
      LLM_API_KEY: "gateway-token",
    });
    expect(dispatcher.SWEEP_TEST_CMD).toBeUndefined();
    expect(serviceEnv("reconciler", config, {})).toMatchObject({
      SWEEP_TEST_CMD: "npm test",
      GIT_TOKEN: "ghp_token",
    });
    expect(serviceEnv("planner", config, {}).GIT_TOKEN).toBeUndefined();
    expect(serviceEnv("merger", config, {})).toMatchObject({ MERGE_STRATEGY: "rebase" });
    expect(serviceEnv("merger", config, {}).LLM_MODEL).toBeUndefined();
  });

  it("gives nats-server nothing of the caller but PATH", () => {
    expect(natsServerEnv(config)).toEqual({ PATH: "/usr/bin" });
  });
});
