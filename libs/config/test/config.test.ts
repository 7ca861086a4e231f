import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ConfigError,
  configSecrets,
  LongshotEnv,
  llmEndpoints,
  loadConfig,
  parseConfig,
  readEnv,
} from "../src/index.ts";

/** Runs `fn` and returns the ConfigError it throws (fails the test if it does not throw one). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

const DEFAULTS = {
  NATS_URL: "nats://127.0.0.1:4222",
  LOG_LEVEL: "info",
  LLM_MODEL: "glm-5",
  LLM_MAX_TOKENS: 65_536,
  LLM_TIMEOUT_MS: 120_000,
  MAX_WORKERS: 50,
  WORKER_TIMEOUT: 1800,
  MERGE_STRATEGY: "rebase",
  GIT_MAIN_BRANCH: "main",
  GIT_BRANCH_PREFIX: "worker/",
  SANDBOX_PROVIDER: "local",
  PLANNER_MAX_ITERATIONS: 100,
  PLANNER_TOOL_ROUNDS: 6,
  REPLAN_AFTER_HANDOFFS: 3,
  SWEEP_TIMEOUT_MS: 600_000,
};

describe("parseConfig(LongshotEnv)", () => {
  it("given an empty environment, then every default applies and optional variables are unset", () => {
    const cfg = parseConfig(LongshotEnv, {});
    expect(cfg).toMatchObject(DEFAULTS);
    for (const k of [
      "LONGSHOT_STATE_DIR",
      "LLM_BASE_URL",
      "LLM_API_KEY",
      "LLM_ENDPOINTS",
      "SWEEP_TEST_CMD",
    ] as const) {
      expect(cfg[k]).toBeUndefined();
    }
  });

  it("given PLANNER_TOOL_ROUNDS, then 0 turns the tools off and it must be an integer 0–50", () => {
    expect(parseConfig(LongshotEnv, { PLANNER_TOOL_ROUNDS: "0" }).PLANNER_TOOL_ROUNDS).toBe(0);
    expect(parseConfig(LongshotEnv, { PLANNER_TOOL_ROUNDS: "12" }).PLANNER_TOOL_ROUNDS).toBe(12);
    for (const bad of ["-1", "51", "2.5", "many"]) {
      const err = configError(() => parseConfig(LongshotEnv, { PLANNER_TOOL_ROUNDS: bad }));
      expect(err.problems.map((p) => p.split(":")[0])).toEqual(["PLANNER_TOOL_ROUNDS"]);
    }
  });

  it("given empty strings, then they fall back to the defaults", () => {
    const cfg = parseConfig(LongshotEnv, {
      NATS_URL: "",
      LOG_LEVEL: "",
      MAX_WORKERS: "",
      MERGE_STRATEGY: "",
      LLM_ENDPOINTS: "",
      LLM_BASE_URL: "",
      SWEEP_TEST_CMD: "",
    });
    expect(cfg).toMatchObject(DEFAULTS);
    expect(cfg.LLM_ENDPOINTS).toBeUndefined();
    expect(cfg.LLM_BASE_URL).toBeUndefined();
    expect(cfg.SWEEP_TEST_CMD).toBeUndefined();
  });

  it("given set values, then numbers are coerced and strings kept; unknown variables are ignored", () => {
    const cfg = parseConfig(LongshotEnv, {
      MAX_WORKERS: "8",
      MERGE_STRATEGY: "fast-forward",
      LOG_LEVEL: "debug",
      GIT_BRANCH_PREFIX: "agent/",
      SWEEP_TEST_CMD: "node --test",
      UNRELATED: "x",
    });
    expect(cfg.MAX_WORKERS).toBe(8);
    expect(cfg.MERGE_STRATEGY).toBe("fast-forward");
    expect(cfg.LOG_LEVEL).toBe("debug");
    expect(cfg.GIT_BRANCH_PREFIX).toBe("agent/");
    expect(cfg.SWEEP_TEST_CMD).toBe("node --test");
    expect(cfg).not.toHaveProperty("UNRELATED");
  });

  it("given several invalid variables, then one ConfigError lists every one of them", () => {
    const err = configError(() =>
      parseConfig(LongshotEnv, {
        MAX_WORKERS: "0",
        MERGE_STRATEGY: "squash",
        LLM_ENDPOINTS: "not json",
      }),
    );
    expect(err.name).toBe("ConfigError");
    expect(err.problems).toHaveLength(3);
    const byVar = (v: string) => err.problems.find((p) => p.startsWith(`${v}: `));
    expect(byVar("MAX_WORKERS")).toBeDefined();
    expect(byVar("MERGE_STRATEGY")).toBeDefined();
    expect(byVar("LLM_ENDPOINTS")).toContain("not valid JSON");
    for (const p of err.problems) expect(err.message).toContain(p);
  });

  it("given the merge queue settings, then verification is on at depth 4 by default and each is validated", () => {
    expect(parseConfig(LongshotEnv, {})).toMatchObject({
      MERGE_VERIFY: "on",
      MERGE_SPECULATION_DEPTH: 4,
      MERGE_VERIFY_TIMEOUT_MS: 600_000,
    });
    expect(
      parseConfig(LongshotEnv, {
        MERGE_VERIFY: "off",
        MERGE_SPECULATION_DEPTH: "8",
        MERGE_VERIFY_TIMEOUT_MS: "30000",
      }),
    ).toMatchObject({ MERGE_VERIFY: "off", MERGE_SPECULATION_DEPTH: 8, MERGE_VERIFY_TIMEOUT_MS: 30_000 });
    const err = configError(() =>
      parseConfig(LongshotEnv, { MERGE_VERIFY: "maybe", MERGE_SPECULATION_DEPTH: "0" }),
    );
    expect(err.problems.map((p) => p.split(":")[0]).sort()).toEqual([
      "MERGE_SPECULATION_DEPTH",
      "MERGE_VERIFY",
    ]);
  });

  it("given a non-numeric number, then the problem names the variable", () => {
    const err = configError(() => parseConfig(LongshotEnv, { LLM_TIMEOUT_MS: "soon" }));
    expect(err.problems).toEqual([expect.stringMatching(/^LLM_TIMEOUT_MS: /)]);
  });

  it("given LLM_ENDPOINTS as valid JSON with a bad entry, then the problems name the entry's field paths", () => {
    const err = configError(() =>
      parseConfig(LongshotEnv, {
        LLM_ENDPOINTS: JSON.stringify([
          { name: "ok", endpoint: "http://a:8000/v1" },
          { name: "bad", endpoint: "not a url", weight: -1 },
        ]),
      }),
    );
    expect(err.problems).toHaveLength(2);
    expect(err.problems.some((p) => p.startsWith("LLM_ENDPOINTS.1.endpoint: "))).toBe(true);
    expect(err.problems.some((p) => p.startsWith("LLM_ENDPOINTS.1.weight: "))).toBe(true);
  });

  it("given LLM_ENDPOINTS as an empty array, then it needs at least one endpoint", () => {
    const err = configError(() => parseConfig(LongshotEnv, { LLM_ENDPOINTS: "[]" }));
    expect(err.problems).toEqual([expect.stringContaining("needs at least one endpoint")]);
  });

  it("given valid LLM_ENDPOINTS, then they are parsed with weight defaulting to 1", () => {
    const cfg = parseConfig(LongshotEnv, {
      LLM_ENDPOINTS: JSON.stringify([
        { name: "a", endpoint: "http://a:8000/v1", apiKey: "sk-a" },
        { name: "b", endpoint: "http://b:8000/v1", weight: 2 },
      ]),
    });
    expect(cfg.LLM_ENDPOINTS).toEqual([
      { name: "a", endpoint: "http://a:8000/v1", apiKey: "sk-a", weight: 1 },
      { name: "b", endpoint: "http://b:8000/v1", weight: 2 },
    ]);
  });
});

describe("llmEndpoints", () => {
  it("given LLM_ENDPOINTS and LLM_BASE_URL, then LLM_ENDPOINTS wins", () => {
    const cfg = parseConfig(LongshotEnv, {
      LLM_BASE_URL: "http://single:1/v1",
      LLM_API_KEY: "sk-single",
      LLM_ENDPOINTS: JSON.stringify([{ name: "pool", endpoint: "http://pool:1/v1", weight: 3 }]),
    });
    expect(llmEndpoints(cfg)).toEqual([{ name: "pool", endpoint: "http://pool:1/v1", weight: 3 }]);
  });

  it("given only LLM_BASE_URL and LLM_API_KEY, then one default endpoint carries the key", () => {
    const cfg = parseConfig(LongshotEnv, { LLM_BASE_URL: "http://single:1/v1", LLM_API_KEY: "sk-single" });
    expect(llmEndpoints(cfg)).toEqual([
      { name: "default", endpoint: "http://single:1/v1", weight: 1, apiKey: "sk-single" },
    ]);
  });

  it("given no model configuration, then the list is empty", () => {
    expect(llmEndpoints(parseConfig(LongshotEnv, {}))).toEqual([]);
  });

  it("given keys in both places, then configSecrets returns each of them", () => {
    const cfg = parseConfig(LongshotEnv, {
      LLM_API_KEY: "sk-single",
      LLM_ENDPOINTS: JSON.stringify([
        { name: "a", endpoint: "http://a:1/v1", apiKey: "sk-a" },
        { name: "b", endpoint: "http://b:1/v1" },
      ]),
    });
    expect(configSecrets(cfg)).toEqual(["sk-single", "sk-a"]);
  });
});

describe("readEnv / loadConfig", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "longshot-config-test-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("given a .env file, then its values are read and the process environment wins over it", async () => {
    await writeFile(
      join(dir, ".env"),
      '# comment\nFROM_FILE=file-value\nSHARED=from-file\nQUOTED="with spaces"\nMAX_WORKERS=7\n',
    );
    const env = readEnv({ SHARED: "from-process", ONLY_PROCESS: "p", UNSET: undefined }, dir);
    expect(env).toEqual({
      FROM_FILE: "file-value",
      SHARED: "from-process",
      QUOTED: "with spaces",
      MAX_WORKERS: "7",
      ONLY_PROCESS: "p",
    });
    const cfg = loadConfig({ MAX_WORKERS: "9", LOG_LEVEL: "warn" }, dir);
    expect(cfg.MAX_WORKERS).toBe(9);
    expect(cfg.LOG_LEVEL).toBe("warn");
    expect(loadConfig({}, dir).MAX_WORKERS).toBe(7);
  });

  it("given no .env file, then only the given environment is read", () => {
    expect(readEnv({ A: "1" }, dir)).toEqual({ A: "1" });
  });

  it("given an invalid value in .env, then loadConfig throws a ConfigError naming it", async () => {
    await writeFile(join(dir, ".env"), "MERGE_STRATEGY=squash\n");
    const err = configError(() => loadConfig({}, dir));
    expect(err.problems).toEqual([expect.stringMatching(/^MERGE_STRATEGY: /)]);
  });
});

describe("reasoningFor", () => {
  it("takes the role's switch first, then LLM_REASONING, else undefined (the model's default)", async () => {
    const { parseConfig, LongshotEnv, reasoningFor } = await import("../src/index.ts");
    const cfg = parseConfig(LongshotEnv, { LLM_REASONING: "off", LLM_REASONING_PLANNER: "on" });
    expect(reasoningFor(cfg, "planner")).toBe(true);
    expect(reasoningFor(cfg, "worker")).toBe(false);
    expect(reasoningFor(parseConfig(LongshotEnv, {}), "worker")).toBeUndefined();
    expect(() => parseConfig(LongshotEnv, { LLM_REASONING_WORKER: "maybe" })).toThrow(/LLM_REASONING_WORKER/);
  });
});
