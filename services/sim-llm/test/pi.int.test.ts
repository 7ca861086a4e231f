import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
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
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type ScriptInput, type SimLlm, startSimLlm } from "../src/index.ts";

const SYSTEM = "You are a sim-llm test coding agent.";
const FINAL = "All done: notes.txt is written and edited.";

/** Exercises every documented Pi tool argument shape (README "Pi tool arguments"). */
const script: ScriptInput = {
  model: "sim-coder",
  conversations: [
    {
      name: "pi worker",
      match: { system: SYSTEM, user: "## Task: notes\n" },
      after: "error",
      turns: [
        {
          toolCalls: [
            { name: "write", arguments: { path: "docs/notes.txt", content: "alpha\nbeta\ngamma\n" } },
          ],
        },
        {
          toolCalls: [
            {
              name: "edit",
              arguments: {
                path: "docs/notes.txt",
                edits: [
                  { oldText: "alpha", newText: "ALPHA" },
                  { oldText: "gamma", newText: "GAMMA" },
                ],
              },
            },
          ],
        },
        {
          toolCalls: [
            { name: "edit", arguments: { path: "docs/notes.txt", oldText: "beta", newText: "BETA" } },
          ],
        },
        { toolCalls: [{ name: "read", arguments: { path: "docs/notes.txt", offset: 2, limit: 1 } }] },
        {
          toolCalls: [
            { name: "bash", arguments: { command: "wc -l < docs/notes.txt > lines.txt", timeout: 30 } },
          ],
        },
        { content: FINAL },
      ],
    },
  ],
};

describe("Pi coding agent against sim-llm", () => {
  let sim: SimLlm;
  let dir: string;
  const requests: string[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "sim-llm-pi-"));
    sim = await startSimLlm({ script, apiKey: "sim-key", log: (l) => requests.push(l) });
  });
  afterEach(async () => {
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("runs write/edit/read/bash tool calls then returns the scripted final text", async () => {
    const cwd = join(dir, "work");
    const agentDir = join(dir, "agent");
    await mkdir(cwd);
    await mkdir(agentDir);

    const authStorage = AuthStorage.inMemory();
    authStorage.setRuntimeApiKey("sim", "sim-key");
    const modelRegistry = ModelRegistry.inMemory(authStorage);
    modelRegistry.registerProvider("sim", {
      baseUrl: sim.url,
      apiKey: "sim-key",
      api: "openai-completions",
      models: [
        {
          id: "sim-coder",
          name: "Sim coder",
          reasoning: false,
          input: ["text"],
          contextWindow: 131072,
          maxTokens: 8192,
          cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
        },
      ],
    });
    const model = modelRegistry.find("sim", "sim-coder");
    expect(model).toBeDefined();
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
      model: model!,
      thinkingLevel: "off",
      authStorage,
      modelRegistry,
      settingsManager,
      resourceLoader,
      sessionManager: SessionManager.inMemory(cwd),
      tools: ["read", "bash", "edit", "write"],
    });
    const toolResults: { name: string; isError: boolean; text: string }[] = [];
    session.subscribe((e: AgentSessionEvent) => {
      if (e.type === "tool_execution_end") {
        const content = (e.result as { content?: { type: string; text?: string }[] }).content ?? [];
        toolResults.push({
          name: e.toolName,
          isError: e.isError,
          text: content.map((c) => c.text ?? "").join(""),
        });
      }
    });
    try {
      await session.prompt("## Task: notes\nWrite and edit docs/notes.txt.");
      expect(session.state.errorMessage).toBeUndefined();
      expect(toolResults.map((r) => [r.name, r.isError])).toEqual([
        ["write", false],
        ["edit", false],
        ["edit", false],
        ["read", false],
        ["bash", false],
      ]);
      expect(toolResults[3]!.text).toContain("BETA");
      expect(toolResults[3]!.text).not.toContain("ALPHA");
      expect(await readFile(join(cwd, "docs/notes.txt"), "utf8")).toBe("ALPHA\nBETA\nGAMMA\n");
      expect((await readFile(join(cwd, "lines.txt"), "utf8")).trim()).toBe("3");
      expect(session.getLastAssistantText()).toBe(FINAL);
      expect(requests.map((l) => /turn=(\d+) stream=(\w+)/.exec(l)?.slice(1).join(":"))).toEqual([
        "0:true",
        "1:true",
        "2:true",
        "3:true",
        "4:true",
        "5:true",
      ]);
      const stats = session.getSessionStats();
      expect(stats.tokens.output).toBeGreaterThan(0);
      expect(stats.tokens.input).toBeGreaterThan(0);
    } finally {
      session.dispose();
    }
  });
});
