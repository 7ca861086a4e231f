import { Counter, llmCallMetrics, type Registry } from "@longshot/metrics";

/** The planner's Prometheus metrics (on the registry `runService` serves). */
export interface PlannerMetrics {
  /** Call after every planning iteration that produced a plan (`planner.iteration`). */
  iteration(): void;
  /** Call when a prompt had to be compacted (`dropped` turns, estimated tokens before and after). */
  compaction(c: { dropped: number; tokensBefore: number; tokensAfter: number }): void;
  /** Call with the bytes a run state change wrote to KV (KvActor stats). */
  stateWritten(bytes: number): void;
  /** Call for every repository tool call of the model (`tool` as called; `ok` false for a refusal or a failed read). */
  toolCall(call: { tool: string; ok: boolean }): void;
  /** The chat client's observer: model latency and tokens (`longshot_llm_*`). */
  llmCall: ReturnType<typeof llmCallMetrics>;
}

/**
 * `longshot_planner_iterations_total` (planning iterations of every run this process planned),
 * `longshot_planner_compactions_total` / `longshot_planner_compacted_turns_total` (prompt compaction),
 * `longshot_planner_tool_calls_total{tool,outcome}` (repository tool calls of the model), and the model-call
 * metrics `longshot_llm_request_duration_seconds` / `longshot_llm_tokens_total`.
 */
export function plannerMetrics(registry: Registry): PlannerMetrics {
  const iterations = new Counter({
    name: "longshot_planner_iterations_total",
    help: "Planning iterations (model replies turned into tasks) of every run this planner planned.",
    registers: [registry],
  });
  const compactions = new Counter({
    name: "longshot_planner_compactions_total",
    help: "Planner calls whose conversation was compacted to fit PLANNER_CONTEXT_TOKENS.",
    registers: [registry],
  });
  const droppedTurns = new Counter({
    name: "longshot_planner_compacted_turns_total",
    help: "Conversation turns replaced by the run digest in planner prompts.",
    registers: [registry],
  });
  const stateBytes = new Counter({
    name: "longshot_planner_state_bytes_written_total",
    help: "Bytes of run state the planner wrote to KV (header and changed parts; JSON values).",
    registers: [registry],
  });
  const toolCalls = new Counter({
    name: "longshot_planner_tool_calls_total",
    help: "Repository tool calls of the planner's model (read_file, list, grep, git_log; other = an unknown tool), by outcome (ok or error).",
    labelNames: ["tool", "outcome"] as const,
    registers: [registry],
  });
  const known = new Set(["read_file", "list", "grep", "git_log"]);
  return {
    iteration: () => iterations.inc(),
    toolCall: (c) =>
      toolCalls.inc({ tool: known.has(c.tool) ? c.tool : "other", outcome: c.ok ? "ok" : "error" }),
    stateWritten: (bytes) => stateBytes.inc(bytes),
    compaction: (c) => {
      compactions.inc();
      droppedTurns.inc(c.dropped);
    },
    llmCall: llmCallMetrics(registry),
  };
}
