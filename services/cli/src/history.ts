import { type Bus, readAttempts, readTranscript } from "@longshot/bus";
import type { AttemptRecord } from "@longshot/contracts";
import type { StoredEvent } from "./events.ts";
import { formatDuration } from "./run-view.ts";

/**
 * `longshot history`: the structured attempt history of a run (records of `longshot-attempts`, transcripts of
 * `longshot-transcripts`) joined with the merge queue's verdict on each attempt (the run's `merge.*` events).
 * Everything is read from NATS, so it works from any machine that reaches the cluster.
 */

/** The merge queue's last word on one attempt: `merged`, `rejected`, `conflict`, `skipped`, `failed`, `verified`. */
export interface MergeVerdict {
  outcome: string;
  /** One line: the sha, the failing check, the conflicting files or the reason. */
  detail: string;
}

const verdictKey = (taskId: string, attempt: number) => `${taskId}#${attempt}`;

/**
 * The last merge queue verdict per attempt (`<taskId>#<attempt>`) among a run's events, in their order (a
 * `merge.verified` is followed by the `merge.merged` of the same attempt).
 */
export function mergeVerdicts(events: StoredEvent[]): Map<string, MergeVerdict> {
  const out = new Map<string, MergeVerdict>();
  for (const e of events) {
    if (!e.type.startsWith("merge.")) continue;
    const d = e.data as Record<string, unknown>;
    if (typeof d.taskId !== "string" || typeof d.attempt !== "number") continue;
    const outcome = e.type.slice("merge.".length);
    const check = d.check as { name?: string } | undefined;
    const detail =
      outcome === "merged"
        ? `at ${String(d.sha ?? "").slice(0, 12)}${d.verified ? " (verified)" : ""}`
        : outcome === "rejected"
          ? `${check?.name ?? "check"} failed: ${String(d.reason ?? "").split("\n")[0]}`
          : outcome === "conflict"
            ? `in ${((d.files as string[] | undefined) ?? []).join(", ")}`
            : outcome === "verified"
              ? `as ${String(d.commit ?? "").slice(0, 12)}, waiting to land`
              : String(d.reason ?? "");
    out.set(verdictKey(d.taskId, d.attempt), { outcome, detail: detail.slice(0, 200) });
  }
  return out;
}

/** A verdict in one line: `merged at <sha>`, `rejected: test failed: …`, `skipped: <reason>`, … */
export function verdictText(v: MergeVerdict | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (!v.detail) return v.outcome;
  const sep = v.outcome === "rejected" || v.outcome === "skipped" || v.outcome === "failed" ? ": " : " ";
  return `${v.outcome}${sep}${v.detail}`;
}

/** The verdict on `r`, if the merge queue gave one. */
export function verdictOf(verdicts: Map<string, MergeVerdict>, r: AttemptRecord): MergeVerdict | undefined {
  return verdicts.get(verdictKey(r.taskId, r.attempt));
}

const diffStat = (r: AttemptRecord) => {
  const m = r.handoff.metrics;
  return `+${m.linesAdded} -${m.linesRemoved} ${m.filesCreated + m.filesModified}f`;
};

/** The `longshot history <run>` table: one row per attempt (task, attempt, outcome, model, harness, diff, …). */
export function formatHistoryTable(records: AttemptRecord[], verdicts: Map<string, MergeVerdict>): string[] {
  const rows = [
    ["TASK", "ATTEMPT", "STATUS", "MODEL", "HARNESS", "TOOLS", "DIFF", "TOKENS", "TIME", "MERGE QUEUE"],
  ];
  for (const r of records) {
    const v = verdictOf(verdicts, r);
    rows.push([
      r.taskId,
      String(r.attempt),
      `${r.handoff.status}${r.timedOut ? " (timed out)" : ""}`,
      r.model,
      r.harness,
      String(r.handoff.metrics.toolCallCount),
      diffStat(r),
      String(r.handoff.metrics.tokensUsed),
      formatDuration(Date.parse(r.finishedAt) - Date.parse(r.startedAt)),
      verdictText(v) ?? "-",
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? "").length)));
  return rows.map((row) =>
    row
      .map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
}

/** The lines describing one attempt in full (without its transcript). */
export function formatAttempt(r: AttemptRecord, verdict: MergeVerdict | undefined): string[] {
  const h = r.handoff;
  const m = h.metrics;
  const took = formatDuration(Date.parse(r.finishedAt) - Date.parse(r.startedAt));
  const lines = [
    `${r.taskId} attempt ${r.attempt}: ${h.status}${r.timedOut ? " (timed out)" : ""}, model ${r.model}, ${r.harness} harness, ${r.sandbox} sandbox, started ${r.startedAt}, took ${took}`,
    `  summary     ${h.summary.split("\n")[0]}`,
  ];
  if (h.concerns.length) lines.push(`  concerns    ${h.concerns.join(" | ")}`);
  lines.push(
    `  diff        +${m.linesAdded} -${m.linesRemoved}, ${m.filesCreated} files created, ${m.filesModified} modified${h.filesChanged.length ? ` (${h.filesChanged.join(", ")})` : ""}`,
    `  agent       ${m.toolCallCount} tool calls, ${m.tokensUsed} tokens`,
    `  branch      ${h.branch} ${h.head ? `at ${h.head.slice(0, 12)}` : "(nothing pushed)"}`,
    `  merge queue ${verdictText(verdict) ?? "no verdict"}`,
  );
  return lines;
}

/**
 * Prints every stored attempt of `taskId` (of every task when undefined) with its transcript, to `out`. Returns
 * how many attempts there were (0: none stored, e.g. a run older than the history, or one that aged out).
 */
export async function printAttempts(
  bus: Bus,
  runId: string,
  taskId: string | undefined,
  events: StoredEvent[],
  out: (line: string) => void,
  opts: { transcripts: boolean } = { transcripts: true },
): Promise<number> {
  const records = await readAttempts(bus, runId, taskId);
  const verdicts = mergeVerdicts(events);
  for (const r of records) {
    for (const l of formatAttempt(r, verdictOf(verdicts, r))) out(l);
    if (!opts.transcripts) continue;
    const text = r.transcript ? await readTranscript(bus, r.transcript).catch(() => undefined) : undefined;
    if (text === undefined) {
      out("  transcript  (none stored)");
      continue;
    }
    const omitted = r.transcript!.omittedLines ? `, ${r.transcript!.omittedLines} left out` : "";
    out(`  transcript  (${r.transcript!.lines} lines${omitted})`);
    for (const l of text.trimEnd().split("\n")) out(`    ${l}`);
  }
  return records.length;
}
