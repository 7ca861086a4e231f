import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GatewayHeaders, type WorkerInput } from "@longshot/contracts";
import {
  type AgentSessionEvent,
  AuthStorage,
  createAgentSession,
  createBashToolDefinition,
  DefaultResourceLoader,
  ModelRegistry,
  SessionManager,
  SettingsManager,
  type ToolDefinition,
} from "@mariozechner/pi-coding-agent";
import { createContainedBashOperations } from "../adapters/shell.ts";
import type { HarnessStopReason } from "../domain/handoff.ts";
import { toolCallDetail } from "../domain/tool-detail.ts";
import type { Harness, HarnessProgress, HarnessResult } from "./types.ts";

/** Provider name under which the model endpoint is registered in Pi. */
const PROVIDER = "longshot";
/** The built-in tools the worker agent gets, by name. */
const TOOLS = ["read", "bash", "edit", "write", "grep", "find", "ls"];

/** Options of {@link createPiHarness}. */
export interface PiHarnessOptions {
  /** OpenAI-compatible base URL ending in `/v1`: the worker's model relay (see adapters/model-relay.ts). */
  baseUrl: string;
  /** Context window advertised to Pi, in tokens; default 131072. */
  contextWindow?: number;
}

/**
 * The Pi coding-agent harness: one in-memory Pi session against the OpenAI-compatible endpoint
 * `opts.baseUrl` (the model relay; it holds no key: the provider outside adds the task's credentials), system prompt = the file `input.systemPromptPath` and nothing else
 * (no context files, skills, extensions or templates; Pi's config dir is a throw-away temp dir), tools
 * read/bash/edit/write/grep/find/ls with `bash` kept in the worker's process group, thinking off, compaction
 * off, model `input.llm.model`. The prompt is the first user message. Progress: one `tool <name>` report per
 * tool call. Aborting `signal` aborts the session.
 */
export function createPiHarness(opts: PiHarnessOptions): Harness {
  return {
    async run(
      input: WorkerInput,
      prompt: string,
      onProgress: (p: HarnessProgress) => void,
      signal: AbortSignal,
    ) {
      const agentDir = await mkdtemp(join(tmpdir(), "longshot-pi-"));
      try {
        return await runSession(input, prompt, opts, agentDir, onProgress, signal);
      } finally {
        await rm(agentDir, { recursive: true, force: true });
      }
    },
  };
}

async function runSession(
  input: WorkerInput,
  prompt: string,
  opts: PiHarnessOptions,
  agentDir: string,
  onProgress: (p: HarnessProgress) => void,
  signal: AbortSignal,
): Promise<HarnessResult> {
  const cwd = input.repoDir;
  const systemPrompt = await readFile(input.systemPromptPath, "utf8");

  const authStorage = AuthStorage.inMemory();
  // Pi refuses to call a provider without a key: the relay needs none, so it gets a placeholder (the
  // provider outside drops it and sends the task's own credentials).
  authStorage.setRuntimeApiKey(PROVIDER, "relay");
  const modelRegistry = ModelRegistry.inMemory(authStorage);
  modelRegistry.registerProvider(PROVIDER, {
    baseUrl: opts.baseUrl,
    // Required by Pi's schema; the runtime key above takes precedence over it.
    apiKey: "runtime-key",
    api: "openai-completions",
    // The LLM gateway keeps a task on one replica (session affinity) by this header; any other endpoint
    // ignores them.
    headers: {
      [GatewayHeaders.taskId]: input.task.id,
      [GatewayHeaders.runId]: input.task.runId,
    },
    models: [
      {
        id: input.llm.model,
        name: input.llm.model,
        reasoning: false,
        input: ["text"],
        contextWindow: opts.contextWindow ?? 131_072,
        maxTokens: input.llm.maxTokens,
        cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
        compat: { supportsStore: false, maxTokensField: "max_tokens" },
      },
    ],
  });
  const model = modelRegistry.find(PROVIDER, input.llm.model);
  if (!model) throw new Error(`model ${input.llm.model} not registered`);

  const settingsManager = SettingsManager.inMemory({
    compaction: { enabled: false },
    retry: { enabled: true, maxRetries: 2 },
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
    systemPromptOverride: () => systemPrompt,
    appendSystemPromptOverride: () => [],
  });
  await resourceLoader.reload();

  const { session } = await createAgentSession({
    cwd,
    agentDir,
    model,
    thinkingLevel: "off",
    authStorage,
    modelRegistry,
    settingsManager,
    resourceLoader,
    sessionManager: SessionManager.inMemory(cwd),
    tools: TOOLS,
    customTools: [
      createBashToolDefinition(cwd, {
        operations: createContainedBashOperations(),
      }) as unknown as ToolDefinition,
    ],
  });

  let toolCalls = 0;
  let stopReason: HarnessStopReason = "stop";
  let errorMessage: string | undefined;
  const unsubscribe = session.subscribe((event: AgentSessionEvent) => {
    if (event.type === "tool_execution_start") {
      toolCalls++;
      const detail = toolCallDetail(event.toolName, event.args);
      onProgress({ message: `tool ${event.toolName}`, ...(detail ? { detail } : {}), toolCalls });
    } else if (event.type === "message_end" && event.message.role === "assistant") {
      stopReason = event.message.stopReason;
      errorMessage = event.message.errorMessage;
    }
  });
  const onAbort = () => void session.abort();
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  try {
    if (!signal.aborted) await session.prompt(prompt);
    const stats = session.getSessionStats();
    return {
      finalText: session.getLastAssistantText() ?? "",
      tokensUsed: stats.tokens.total,
      toolCallCount: Math.max(toolCalls, stats.toolCalls),
      stopReason: signal.aborted ? "aborted" : stopReason,
      ...(errorMessage !== undefined && !signal.aborted ? { errorMessage } : {}),
    };
  } finally {
    signal.removeEventListener("abort", onAbort);
    unsubscribe();
    session.dispose();
  }
}
