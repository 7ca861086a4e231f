import { createHash } from "node:crypto";
import type { RepoSnapshot } from "@longshot/git";
import { activeTasks, type RunState, type SeenState, type TaskRecord } from "./run.ts";

export type { RepoSnapshot } from "@longshot/git";

/** Short content hash of a document (sha1, 16 hex chars). */
export function docHash(text: string | undefined): string | undefined {
  return text === undefined ? undefined : createHash("sha1").update(text).digest("hex").slice(0, 16);
}

/** The {@link SeenState} after the model has been shown `repo`. */
export function seenState(repo: RepoSnapshot): SeenState {
  const docHashes: NonNullable<SeenState["docHashes"]> = {};
  const f = docHash(repo.docs.features);
  const d = docHash(repo.docs.decisions);
  if (f) docHashes.features = f;
  if (d) docHashes.decisions = d;
  return { head: repo.head, files: repo.files, docHashes };
}

const cap = (s: string | undefined, n: number) =>
  s === undefined
    ? undefined
    : s.length > n
      ? `${s.slice(0, n)}\n…(truncated, ${s.length - n} more chars)`
      : s;
const section = (title: string, body: string | undefined) =>
  body === undefined ? "" : `\n## ${title}\n\n${body}\n`;
const tree = (files: string[], max = 300) =>
  files.slice(0, max).join("\n") + (files.length > max ? `\n…(${files.length - max} more files)` : "");
const commitLines = (c: RepoSnapshot["commits"]) =>
  c.map((x) => `${x.sha.slice(0, 8)} ${x.subject} (${x.author})`).join("\n");

/**
 * The first user message of a run: the request, SPEC.md (≤ 20k chars), FEATURES.json (≤ 20k), AGENTS.md
 * (≤ 10k), DECISIONS.md (≤ 10k), the file tree (≤ 300 entries) and the last 40 commits (inventory §1.5).
 */
export function initialMessage(s: RunState, repo: RepoSnapshot): string {
  return [
    `# Request\n\n${s.run.prompt}\n`,
    `Target repository: base branch \`${s.run.baseBranch}\` at ${repo.head.slice(0, 12)}. Up to ${s.run.maxWorkers} workers run in parallel.`,
    section("SPEC.md", cap(repo.docs.spec, 20_000)),
    section("FEATURES.json", cap(repo.docs.features, 20_000)),
    section("AGENTS.md", cap(repo.docs.agents, 10_000)),
    section("DECISIONS.md", cap(repo.docs.decisions, 10_000)),
    section("File tree", tree(repo.files)),
    section("Recent commits", commitLines(repo.commits.slice(0, 40))),
    "\nSPEC.md and FEATURES.json are binding. Reply with the JSON object described in your instructions: " +
      '{"scratchpad": "...", "tasks": [...]}. Return an empty tasks array only when the request is fully built.',
  ].join("\n");
}

/**
 * One task's entry under "New handoffs". A retried task shows its first attempt's outcome (kept in
 * `previous`) and either its second attempt's handoff or that the retry has not finished: a record whose
 * attempt 2 was filed has no `handoff` until that attempt ends.
 */
function report(id: string, r: TaskRecord): string {
  const merge = r.merge
    ? `, merge: ${r.merge}${r.mergeDetail ? ` (${r.mergeDetail})` : ""}`
    : ", merge pending";
  const lines: string[] = [];
  if (r.previous) {
    lines.push(
      `### ${id} — attempt 1 ${r.previous.status}, retried as attempt ${r.task.attempt}${r.task.model ? ` on ${r.task.model}` : ""}`,
      cap(r.previous.summary, 300) ?? "",
    );
    if (r.previous.concerns.length) lines.push(`Concerns: ${r.previous.concerns.join(" | ")}`);
  }
  const h = r.handoff;
  if (!h) {
    lines.push(r.previous ? `Attempt ${r.task.attempt}: not finished yet.` : `### ${id} — no handoff yet`);
    return lines.join("\n");
  }
  lines.push(
    r.previous ? `Attempt ${r.task.attempt}: ${h.status}${merge}` : `### ${id} — ${h.status}${merge}`,
    cap(h.summary, 300) ?? "",
  );
  if (h.filesChanged.length) lines.push(`Files: ${h.filesChanged.slice(0, 30).join(", ")}`);
  if (h.concerns.length) lines.push(`Concerns: ${h.concerns.join(" | ")}`);
  if (h.suggestions.length) lines.push(`Suggestions: ${h.suggestions.join(" | ")}`);
  return lines.join("\n");
}

/** Most handoffs reported in one follow-up (the newest); the rest are counted only. */
const MAX_REPORTS = 40;
/** Most active tasks listed in one follow-up. */
const MAX_ACTIVE = 60;

/**
 * A follow-up message: only what changed since the last plan — new handoffs (the newest 40; summary ≤ 300
 * chars, ≤ 30 files), merge outcomes, tasks still active (≤ 60 listed), the last sweep of the base branch, new
 * commits and files. Its size is bounded whatever the run's size.
 */
export function followUpMessage(s: RunState, repo: RepoSnapshot, prev: SeenState): string {
  // A task id is pending once per new handoff; a retried task can be pending twice (both attempts).
  const pending = [...new Set(s.pendingReports)];
  const reports = pending.slice(-MAX_REPORTS).flatMap((id) => {
    const r = s.tasks[id];
    return r ? [report(id, r)] : [];
  });
  if (pending.length > MAX_REPORTS) {
    reports.unshift(
      `(${pending.length - MAX_REPORTS} earlier handoffs are counted in the health line, not listed)`,
    );
  }
  const activeAll = activeTasks(s);
  const active = activeAll
    .slice(0, MAX_ACTIVE)
    .map((r) => `- ${r.task.id} (p${r.task.priority}): ${cap(r.task.description, 120)}`);
  if (activeAll.length > MAX_ACTIVE) active.push(`- … and ${activeAll.length - MAX_ACTIVE} more`);
  const prevFiles = new Set(prev.files);
  const nowFiles = new Set(repo.files);
  const added = repo.files.filter((f) => !prevFiles.has(f));
  const removed = prev.files.filter((f) => !nowFiles.has(f));
  const newCommits: RepoSnapshot["commits"] = [];
  for (const c of repo.commits) {
    if (c.sha === prev.head) break;
    newCommits.push(c);
  }
  const sweep = s.lastSweep
    ? `Last sweep of ${s.run.baseBranch} at ${s.lastSweep.sha.slice(0, 8)}: ${s.lastSweep.summary}`
    : "No sweep yet.";
  const recs = s.order.map((id) => s.tasks[id]!);
  const count = (o: string) => recs.filter((r) => r.merge === o).length;
  const decided = recs.filter((r) => r.merge).length;
  const queue = `Merge queue: ${count("merged")} merged, ${count("conflict")} conflicts, ${count("failed")} failed, ${count("skipped")} skipped, ${recs.filter((r) => r.handoff && !r.merge).length} waiting${decided ? `; success rate ${Math.round((100 * count("merged")) / decided)}%` : ""}.`;
  const health = `${sweep}\n${queue}`;
  // FEATURES.json and DECISIONS.md only when they changed since the model last saw them.
  const changedDocs = (["features", "decisions"] as const).filter(
    (k) => repo.docs[k] !== undefined && docHash(repo.docs[k]) !== prev.docHashes?.[k],
  );
  return [
    `# Update (iteration ${s.iteration + 1})`,
    section("New handoffs", reports.length ? reports.join("\n\n") : "none"),
    section("Active tasks", active.length ? active.join("\n") : "none"),
    section(
      "Health",
      health + (s.lastSweep && !s.lastSweep.green ? "\nEmit targeted fix tasks for the failures." : ""),
    ),
    section("New commits", newCommits.length ? commitLines(newCommits) : "none"),
    ...changedDocs.map((k) =>
      section(
        `${k === "features" ? "FEATURES.json" : "DECISIONS.md"} (changed)`,
        cap(repo.docs[k], k === "features" ? 20_000 : 10_000),
      ),
    ),
    section(
      "File tree changes",
      added.length + removed.length > 100
        ? `full tree:\n${tree(repo.files)}`
        : `added: ${added.join(", ") || "none"}\nremoved: ${removed.join(", ") || "none"}`,
    ),
    '\nReply with {"scratchpad": "...", "tasks": [...]} — only NEW tasks; an empty array when nothing is left to do.',
  ].join("\n");
}
