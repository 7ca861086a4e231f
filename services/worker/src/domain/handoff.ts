import { type Handoff, HandoffStatus, type Task } from "@longshot/contracts";

/** The handoff block the agent is asked to end with (see {@link buildTaskPrompt}). */
export interface AgentHandoff {
  status: HandoffStatus;
  summary: string;
  filesChanged: string[];
  concerns: string[];
  suggestions: string[];
}

/** Result of {@link parseAgentHandoff}: the agent's handoff, or why none could be read. */
export type AgentHandoffParse = { ok: true; handoff: AgentHandoff } | { ok: false; reason: string };

/** Concern added when the agent's final text holds no usable handoff JSON. */
export const NO_HANDOFF_CONCERN = "agent returned no valid handoff JSON";

/**
 * Reads the agent's handoff from its final text. Pure and tolerant:
 * 1. the last ```json fenced block that parses to an object (earlier fences are tried if the last is broken);
 * 2. else the last top-level balanced `{...}` in the text that mentions `"status"` and parses.
 * A second parse attempt drops trailing commas. `status` must be one of complete|partial|blocked|failed
 * (case-insensitive); missing string fields become "" and non-string array items are dropped.
 * Never throws; `ok: false` carries the reason (no JSON found, bad JSON, bad status).
 */
export function parseAgentHandoff(text: string): AgentHandoffParse {
  const candidates = [...fencedJsonBlocks(text).reverse(), ...topLevelObjects(text).reverse()];
  let reason = "no JSON object with a status found";
  for (const candidate of candidates) {
    const value = parseLoose(candidate);
    if (value === undefined) {
      reason = "handoff JSON does not parse";
      continue;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value) || !("status" in value)) continue;
    const record = value as Record<string, unknown>;
    const status = HandoffStatus.safeParse(
      typeof record.status === "string" ? record.status.trim().toLowerCase() : record.status,
    );
    if (!status.success) {
      reason = `invalid handoff status ${JSON.stringify(record.status)}`;
      continue;
    }
    return {
      ok: true,
      handoff: {
        status: status.data,
        summary: typeof record.summary === "string" ? record.summary.trim() : "",
        filesChanged: stringArray(record.filesChanged),
        concerns: stringArray(record.concerns),
        suggestions: stringArray(record.suggestions),
      },
    };
  }
  return { ok: false, reason };
}

/** Why the harness stopped: Pi's stop reasons; the command harness reports `stop` or `error`. */
export type HarnessStopReason = "stop" | "length" | "toolUse" | "error" | "aborted";

/** What the harness reports about the agent run. Tokens as counted by the model endpoint. */
export interface AgentOutcome {
  finalText: string;
  tokensUsed: number;
  toolCallCount: number;
  stopReason: HarnessStopReason;
  errorMessage?: string;
}

/** What git says about the attempt: files changed vs the start sha, line and file counts, pushed head. */
export interface RepoOutcome {
  filesChanged: string[];
  linesAdded: number;
  linesRemoved: number;
  filesCreated: number;
  filesModified: number;
  /** Sha of the pushed branch; absent when nothing was pushed. */
  head?: string;
}

/** An agent outcome for an attempt whose agent never ran (nothing said, nothing counted). */
export const emptyAgentOutcome = (): AgentOutcome => ({
  finalText: "",
  tokensUsed: 0,
  toolCallCount: 0,
  stopReason: "stop",
});

/** A repo outcome with no changes and nothing pushed. */
export const emptyRepoOutcome = (): RepoOutcome => ({
  filesChanged: [],
  linesAdded: 0,
  linesRemoved: 0,
  filesCreated: 0,
  filesModified: 0,
});

/** Inputs of {@link buildHandoff}. `durationMs` is the worker's wall time. */
export interface BuildHandoffInput {
  task: Task;
  parsed: AgentHandoffParse;
  agent: AgentOutcome;
  repo: RepoOutcome;
  durationMs: number;
  /** Set when the attempt failed outside the agent (e.g. the worker crashed): the reason. */
  failure?: string;
  /** Set when the worker's own deadline aborted the agent: the deadline in ms. */
  timedOutAfterMs?: number;
  /** Set when a signal (e.g. SIGTERM from the provider) interrupted the agent. */
  interruptedBy?: string;
  /**
   * Problems the worker found in the repository after the agent that fail the attempt whatever the agent
   * said (e.g. "rebase not completed", conflict markers left in changed files); they follow the reason of an
   * earlier rule, if any, and come before the agent's own concerns.
   */
  repoFailures?: string[];
  /** Concerns from the worker itself (e.g. a failed push), appended last. */
  extraConcerns?: string[];
}

/**
 * Decides the final {@link Handoff} of one attempt. Pure. Rules, first match wins for the status:
 * `failure` set → failed with it as the first concern; timed out → failed ("timed out after N ms"); interrupted → failed; stopReason `error` → failed with the
 * error message; empty response (0 tokens, 0 tool calls, no handoff JSON) → failed; a parsed handoff → its
 * status; otherwise → partial with {@link NO_HANDOFF_CONCERN} (never a blind `complete`). Then any
 * `repoFailures` force `failed`.
 * `filesChanged` and the diff metrics always come from git, not from the model. A `complete` with no git
 * changes keeps its status and gains the concern "no changes"; files outside the task scope (not checked for
 * conflict-fix tasks, whose branch carries the original task's files) and files the agent claims but git
 * does not show are reported as concerns.
 */
export function buildHandoff(input: BuildHandoffInput): Handoff {
  const { task, parsed, agent, repo } = input;
  const concerns: string[] = [];
  let status: HandoffStatus;
  if (input.failure !== undefined) {
    status = "failed";
    concerns.push(input.failure);
  } else if (input.timedOutAfterMs !== undefined) {
    status = "failed";
    concerns.push(`timed out after ${input.timedOutAfterMs} ms`);
  } else if (input.interruptedBy !== undefined) {
    status = "failed";
    concerns.push(`worker interrupted by ${input.interruptedBy}`);
  } else if (agent.stopReason === "error") {
    status = "failed";
    concerns.push(`agent error: ${agent.errorMessage ?? "unknown error"}`);
  } else if (agent.tokensUsed === 0 && agent.toolCallCount === 0 && !parsed.ok) {
    status = "failed";
    concerns.push("empty response: the agent used no tokens and no tool calls");
  } else if (parsed.ok) {
    status = parsed.handoff.status;
  } else {
    status = "partial";
    concerns.push(`${NO_HANDOFF_CONCERN} (${parsed.reason})`);
  }
  if (input.repoFailures !== undefined && input.repoFailures.length > 0) {
    status = "failed";
    concerns.push(...input.repoFailures);
  }
  if (parsed.ok) concerns.push(...parsed.handoff.concerns);
  if (agent.stopReason === "length") concerns.push("the agent's last reply was cut off at max tokens");
  if (status === "complete" && repo.filesChanged.length === 0) concerns.push("no changes");

  const outside = task.conflictBranch === undefined ? outsideScope(repo.filesChanged, task.scope) : [];
  if (outside.length > 0) concerns.push(`changed files outside the task scope: ${outside.join(", ")}`);
  if (parsed.ok) {
    const changed = new Set(repo.filesChanged);
    const phantom = parsed.handoff.filesChanged.filter((f) => !changed.has(normalizePath(f)));
    if (phantom.length > 0) concerns.push(`agent reported files git shows unchanged: ${phantom.join(", ")}`);
  }
  concerns.push(...(input.extraConcerns ?? []));

  return {
    taskId: task.id,
    runId: task.runId,
    status,
    // A failure before any agent output (setup, crash) is the summary, not "(no summary)".
    summary: input.failure !== undefined && !parsed.ok ? input.failure : summaryOf(parsed, agent.finalText),
    filesChanged: repo.filesChanged,
    concerns,
    suggestions: parsed.ok ? parsed.handoff.suggestions : [],
    metrics: {
      linesAdded: repo.linesAdded,
      linesRemoved: repo.linesRemoved,
      filesCreated: repo.filesCreated,
      filesModified: repo.filesModified,
      tokensUsed: agent.tokensUsed,
      toolCallCount: agent.toolCallCount,
      durationMs: Math.max(0, Math.round(input.durationMs)),
    },
    branch: task.branch,
    ...(repo.head !== undefined ? { head: repo.head } : {}),
    task,
  };
}

/**
 * The handoff summary: the agent's `summary` field, else the start of its final text (≤ 500 chars), else a
 * placeholder. Pure.
 */
export function summaryOf(parsed: AgentHandoffParse, finalText: string): string {
  if (parsed.ok && parsed.handoff.summary.length > 0) return parsed.handoff.summary;
  const text = finalText
    .replace(/```[\s\S]*?```/g, "")
    .trim()
    .slice(0, 500);
  return text.length > 0 ? text : "(no summary)";
}

/** First line of {@link summaryOf}, at most 72 chars: the subject of the safety-net commit. Pure. */
export function summaryLine(parsed: AgentHandoffParse, finalText: string): string {
  const line = (summaryOf(parsed, finalText).split("\n")[0] ?? "").trim();
  return line.length > 72 ? `${line.slice(0, 69)}...` : line;
}

function fencedJsonBlocks(text: string): string[] {
  return [...text.matchAll(/```json[^\n]*\n([\s\S]*?)```/gi)].map((m) => m[1] ?? "");
}

/**
 * Top-level balanced `{...}` spans mentioning "status", scanning left to right with a string-aware brace
 * matcher; an opening brace that never closes (stray prose) is skipped instead of swallowing the rest.
 */
function topLevelObjects(text: string): string[] {
  const out: string[] = [];
  let i = text.indexOf("{");
  while (i !== -1) {
    const end = matchingBrace(text, i);
    if (end === -1) {
      i = text.indexOf("{", i + 1);
      continue;
    }
    const span = text.slice(i, end + 1);
    if (span.includes('"status"')) out.push(span);
    i = text.indexOf("{", end + 1);
  }
  return out;
}

/** Index of the `}` closing the `{` at `open`, or -1. Braces inside JSON strings are ignored. */
function matchingBrace(text: string, open: number): number {
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (let i = open; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === "\\") escaped = true;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{") depth++;
    else if (ch === "}") {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

function parseLoose(candidate: string): unknown {
  for (const attempt of [candidate, candidate.replace(/,\s*([}\]])/g, "$1")]) {
    try {
      return JSON.parse(attempt);
    } catch {
      // try the next form
    }
  }
  return undefined;
}

function stringArray(value: unknown): string[] {
  if (!Array.isArray(value)) return [];
  return value.filter((v): v is string => typeof v === "string").map((v) => v.trim());
}

function normalizePath(path: string): string {
  return path.trim().replace(/^\.\//, "");
}

function outsideScope(files: string[], scope: string[]): string[] {
  if (scope.length === 0) return [];
  const entries = scope.map(normalizePath);
  return files.filter(
    (f) => !entries.some((s) => f === s || (s.endsWith("/") ? f.startsWith(s) : f.startsWith(`${s}/`))),
  );
}
