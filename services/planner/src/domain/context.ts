import { type RunState, type TaskRecord, type Turn, unmergedWork } from "./run.ts";

/**
 * Rough token count of a text for budgeting prompts: 1 token per 4 characters (the usual estimate for English
 * and code with BPE tokenizers; exact counts come back from the endpoint in `usage`). Pure.
 */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

const turnsTokens = (turns: readonly Turn[]) => turns.reduce((n, t) => n + estimateTokens(t.content) + 4, 0);

const cap = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}…` : s);
const list = (items: string[], max: number, what: string) =>
  items.length === 0
    ? "none"
    : items.slice(-max).join("\n") +
      (items.length > max ? `\n(${items.length - max} earlier ${what} not listed)` : "");

/**
 * A compact digest of the whole run, standing in for the conversation turns a compaction dropped: task counts,
 * the most recent merged tasks, what is in flight, what failed or is not merged (and why), the most recent
 * open concerns and the health of main. Its size is bounded whatever the run's size (every list is capped).
 * Pure.
 */
export function runDigest(s: RunState): string {
  const recs: TaskRecord[] = s.order.map((id) => s.tasks[id]!);
  const merged = recs.filter((r) => r.merge === "merged" || r.resolvedBy !== undefined);
  const inFlight = recs.filter((r) => !r.handoff || !r.merge);
  const bad = recs.filter(
    (r) => r.handoff && (r.handoff.status === "failed" || r.handoff.status === "blocked"),
  );
  const concerns = recs.flatMap((r) =>
    (r.handoff?.concerns ?? []).map((c) => `${r.task.id}: ${cap(c, 160)}`),
  );
  const unmerged = unmergedWork(s).map((u) => `${u.taskId}: ${cap(u.reason, 160)}`);
  return [
    "# Run digest",
    "(Older turns of this conversation were compacted into this digest; your last scratchpad follows it.)",
    `Tasks so far: ${recs.length} — ${merged.length} landed on ${s.run.baseBranch}, ${inFlight.length} in flight, ${bad.length} failed or blocked, ${unmerged.length} not merged. Planner iterations: ${s.iteration}.`,
    `Task ids are never reused; ${recs.length} are taken.`,
    `## Landed (most recent)\n${list(
      merged.map((r) => `- ${r.task.id}: ${cap(r.task.description, 100)}`),
      40,
      "landed tasks",
    )}`,
    `## In flight\n${list(
      inFlight.map((r) => `- ${r.task.id} (p${r.task.priority}): ${cap(r.task.description, 100)}`),
      60,
      "in-flight tasks",
    )}`,
    `## Failed or blocked\n${list(
      bad.map((r) => `- ${r.task.id} (${r.handoff!.status}): ${cap(r.handoff!.summary, 160)}`),
      30,
      "failures",
    )}`,
    `## Not merged\n${list(unmerged, 30, "unmerged tasks")}`,
    `## Open concerns (most recent)\n${list(concerns, 20, "concerns")}`,
    `## Main\n${s.lastSweep ? `${s.lastSweep.sha.slice(0, 8)}: ${s.lastSweep.summary}` : "not swept yet"}`,
  ].join("\n\n");
}

/**
 * Most recent turns kept after the anchor (3 exchanges): the model's own scratchpad carries its memory and the
 * digest carries the run, so older turns only grow the prompt. Keeps the prompt flat as a run grows.
 */
export const MAX_RECENT_TURNS = 6;

/** The prompt of one planner call, and what compaction did to get it under the budget. */
export interface PlannerPrompt {
  /** The messages to send: the anchor (system + first request), the kept recent turns, the new message. */
  messages: Turn[];
  /** The conversation window to keep after the call (before the model's reply is appended). */
  window: Turn[];
  /** Turns dropped from the window by this call (0 = no compaction). */
  dropped: number;
  /** Estimated prompt tokens before and after compaction. */
  tokensBefore: number;
  tokensAfter: number;
}

/**
 * Fits one planner call into `budgetTokens` (PLANNER_CONTEXT_TOKENS). The window is the conversation as kept:
 * the anchor — the system prompt and the first message (the request with its documents and tree: the stable,
 * cache-friendly prefix) — then the recent turns. When anchor + recent turns + `next` exceed the budget, or
 * more than `maxRecentTurns` recent turns are kept (default {@link MAX_RECENT_TURNS}), the oldest recent turns
 * are dropped in whole (user, assistant) exchanges, always keeping the model's last reply
 * (its scratchpad is its memory), and `digest` (see {@link runDigest}) is put in front of `next` so nothing
 * the run knows is lost. The window therefore stays bounded by the budget however long the run. Pure.
 */
export function fitPrompt(
  window: readonly Turn[],
  next: Turn,
  budgetTokens: number,
  digest: () => string,
  maxRecentTurns = MAX_RECENT_TURNS,
): PlannerPrompt {
  const anchor = window.slice(0, 2);
  let recent = window.slice(2);
  const tokensBefore = turnsTokens([...window, next]);
  if (tokensBefore <= budgetTokens && recent.length <= maxRecentTurns) {
    return {
      messages: [...window, next],
      window: [...window],
      dropped: 0,
      tokensBefore,
      tokensAfter: tokensBefore,
    };
  }
  const withDigest: Turn = { role: next.role, content: `${digest()}\n\n---\n\n${next.content}` };
  let dropped = 0;
  // Drop whole exchanges from the front; keep at least the last assistant reply.
  while (
    recent.length > 1 &&
    (recent.length > maxRecentTurns || turnsTokens([...anchor, ...recent, withDigest]) > budgetTokens)
  ) {
    const cut = recent[0]!.role === "user" && recent[1]?.role === "assistant" ? 2 : 1;
    recent = recent.slice(cut);
    dropped += cut;
  }
  // A window that only starts with an assistant reply reads oddly to some chat templates: keep it after a
  // user turn (the digest says what came before).
  const kept =
    recent[0]?.role === "assistant"
      ? [{ role: "user" as const, content: "(earlier turns compacted)" }, ...recent]
      : recent;
  const messages = [...anchor, ...kept, withDigest];
  return {
    messages,
    window: [...anchor, ...kept],
    dropped,
    tokensBefore,
    tokensAfter: turnsTokens(messages),
  };
}

export type { RunState };
