import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type AgentSessionEvent,
  AuthStorage,
  createAgentSession,
  DefaultResourceLoader,
  ModelRegistry,
  SessionManager,
  SettingsManager,
} from "@mariozechner/pi-coding-agent";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../src/index.ts";
import { startReplica, type TestReplica } from "./replicas.ts";

const SYSTEM = `You are a gateway test coding agent. ${"Follow the repository conventions carefully. ".repeat(20)}`;
const FINAL = "All done: notes.txt is written and edited.";
const PROVIDER_KEY = "sk-provider-pi-test-0001";
const script = {
  model: "glm-5",
  conversations: [
    {
      name: "pi worker",
      match: { system: "You are a gateway test coding agent.", user: "## Task: notes\n" },
      after: "error",
      turns: [
        { toolCalls: [{ name: "write", arguments: { path: "docs/notes.txt", content: "alpha\nbeta\n" } }] },
        {
          toolCalls: [
            {
              name: "edit",
              arguments: { path: "docs/notes.txt", edits: [{ oldText: "alpha", newText: "ALPHA" }] },
            },
          ],
        },
        { toolCalls: [{ name: "bash", arguments: { command: "wc -l < docs/notes.txt > lines.txt" } }] },
        { content: FINAL },
      ],
    },
  ],
};

let dir: string;
let replicas: TestReplica[];
let gw: Gateway;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llm-gateway-pi-"));
  const scriptPath = join(dir, "script.json");
  await writeFile(scriptPath, JSON.stringify(script));
  replicas = await Promise.all(
    ["p1", "p2", "p3"].map((n) => startReplica(n, ["--script", scriptPath, "--tps", "5000"], PROVIDER_KEY)),
  );
  gw = await startGateway({
    upstreams: replicas.map((r) => ({ name: r.name, endpoint: r.url, apiKey: PROVIDER_KEY })),
    adminToken: "admin-token-for-pi-test-0123456789",
    logDestination: { write() {} },
  });
});

afterAll(async () => {
  await gw?.close();
  await Promise.all((replicas ?? []).map((r) => r.stop()));
  await rm(dir, { recursive: true, force: true });
});

describe("the Pi coding agent through the gateway", () => {
  it("runs a tool-calling session on one replica with its prefix cached, and the gateway counts its tokens", async () => {
    const cwd = join(dir, "work");
    const agentDir = join(dir, "agent");
    await mkdir(cwd);
    await mkdir(agentDir);
    // The sandbox only ever gets a gateway token, scoped to its task.
    const token = await gw.issueToken({
      runId: "run-pi",
      taskId: "notes",
      role: "worker",
      budgetTokens: 1_000_000,
    });
    const authStorage = AuthStorage.inMemory();
    authStorage.setRuntimeApiKey("gateway", token);
    const modelRegistry = ModelRegistry.inMemory(authStorage);
    modelRegistry.registerProvider("gateway", {
      baseUrl: gw.url,
      apiKey: token,
      api: "openai-completions",
      models: [
        {
          id: "glm-5",
          name: "GLM-5 via gateway",
          reasoning: false,
          input: ["text"],
          contextWindow: 131072,
          maxTokens: 8192,
          cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
        },
      ],
    });
    const settingsManager = SettingsManager.inMemory({
      compaction: { enabled: false },
      retry: { enabled: false },
    });
    const resourceLoader = new DefaultResourceLoader({
      cwd,
      agentDir,
      settingsManager,
      noExtensions: true,
      noSkills: true,
      noPromptTemplates: true,
      noThemes: true,
      noContextFiles: true,
      systemPromptOverride: () => SYSTEM,
    });
    await resourceLoader.reload();
    const { session } = await createAgentSession({
      cwd,
      agentDir,
      model: modelRegistry.find("gateway", "glm-5")!,
      thinkingLevel: "off",
      authStorage,
      modelRegistry,
      settingsManager,
      resourceLoader,
      sessionManager: SessionManager.inMemory(cwd),
      tools: ["read", "bash", "edit", "write"],
    });
    const tools: string[] = [];
    session.subscribe((e: AgentSessionEvent) => {
      if (e.type === "tool_execution_end") tools.push(`${e.toolName}:${e.isError ? "error" : "ok"}`);
    });
    try {
      await session.prompt("## Task: notes\nWrite and edit docs/notes.txt.");
      expect(session.state.errorMessage).toBeUndefined();
      expect(tools).toEqual(["write:ok", "edit:ok", "bash:ok"]);
      expect(await readFile(join(cwd, "docs/notes.txt"), "utf8")).toBe("ALPHA\nbeta\n");
      expect(session.getLastAssistantText()).toBe(FINAL);

      // Session affinity (the token's task): all 4 model calls on one replica, whose cache then held the prefix.
      const counts = await Promise.all(replicas.map((r) => r.metric("sglang:num_requests_total")));
      expect(counts.sort()).toEqual([0, 0, 4]);
      const stats = session.getSessionStats();
      expect(stats.tokens.cacheRead).toBeGreaterThan(0);
      // The gateway's accounting matches what Pi saw (Pi's input excludes cached tokens).
      const [usage] = await gw.usage("run-pi");
      expect(usage!.requests).toBe(4);
      expect(usage!.byTask.notes!.promptTokens).toBe(stats.tokens.input + stats.tokens.cacheRead);
      expect(usage!.completionTokens).toBe(stats.tokens.output);
      expect(usage!.cachedTokens).toBe(stats.tokens.cacheRead);
    } finally {
      session.dispose();
    }
  });
});
