import type { Task } from "@longshot/contracts";
import type { DecompositionState } from "./decomposition.ts";

/** What the subplanner reads from the base branch before each model call. */
export interface RepoSnapshot {
  head: string;
  files: string[];
  commits: { sha: string; subject: string; author: string }[];
  /** FEATURES.json when the repository has one. */
  features?: string;
}

const cap = (s: string, n: number) =>
  s.length > n ? `${s.slice(0, n)}\n…(truncated, ${s.length - n} more chars)` : s;
const section = (title: string, body: string | undefined) =>
  body === undefined ? "" : `\n## ${title}\n\n${body}\n`;
const tree = (files: string[], max = 300) =>
  files.slice(0, max).join("\n") + (files.length > max ? `\n…(${files.length - max} more files)` : "");
const commitLines = (c: RepoSnapshot["commits"]) =>
  c.map((x) => `${x.sha.slice(0, 8)} ${x.subject} (${x.author})`).join("\n");

/** The parent task as shown to the model: id, description, scope, acceptance, priority, depth. */
export function parentSection(parent: Task): string {
  return [
    `# Parent task: ${parent.id}`,
    "",
    `- priority: ${parent.priority}`,
    `- depth: ${parent.depth}`,
    `- scope (${parent.scope.length} files):`,
    ...parent.scope.map((f) => `  - ${f}`),
    "",
    "## Description",
    "",
    parent.description,
    "",
    "## Acceptance",
    "",
    parent.acceptance || "(none given)",
    ...(parent.context ? ["", "## Context from an earlier attempt", "", cap(parent.context, 4000)] : []),
  ].join("\n");
}

/**
 * The first user message of a decomposition: the parent task, then the base branch's file tree (≤ 300
 * entries), its last 20 commits and FEATURES.json (≤ 10k chars) when present.
 */
export function initialMessage(parent: Task, repo: RepoSnapshot, maxSubtasks: number): string {
  return [
    parentSection(parent),
    `\nBase branch \`${parent.baseBranch}\` at ${repo.head.slice(0, 12)}.`,
    section("File tree", tree(repo.files)),
    section("Recent commits", commitLines(repo.commits.slice(0, 20)) || "none"),
    section("FEATURES.json", repo.features === undefined ? undefined : cap(repo.features, 10_000)),
    `\nSplit the parent into at most ${maxSubtasks} subtasks whose scopes are disjoint subsets of the parent's ` +
      'scope, or return an empty tasks array if it is atomic. Reply with {"scratchpad": "...", "tasks": [...]}.',
  ].join("\n");
}

/**
 * A follow-up after a batch finished: every subtask of the last round with its handoff (summary ≤ 300 chars,
 * ≤ 30 files, concerns, suggestions) and merge outcome, the commits that landed since the model last looked,
 * and how many rounds are left.
 */
export function followUpMessage(
  s: DecompositionState,
  repo: RepoSnapshot,
  maxRounds: number,
  maxSubtasks: number,
): string {
  const reports = s.order
    .map((id) => s.subtasks[id]!)
    .filter((r) => r.round === s.round)
    .map((r) => {
      const h = r.handoff;
      const merge = r.merge
        ? `merge: ${r.merge}${r.mergeDetail ? ` (${r.mergeDetail})` : ""}`
        : "merge pending";
      const lines = [
        `### ${r.task.id} — ${h?.status ?? "no handoff"}, ${merge}`,
        `Scope: ${r.task.scope.join(", ")}`,
      ];
      if (h) {
        lines.push(cap(h.summary, 300));
        if (h.filesChanged.length) lines.push(`Files: ${h.filesChanged.slice(0, 30).join(", ")}`);
        if (h.concerns.length) lines.push(`Concerns: ${h.concerns.join(" | ")}`);
        if (h.suggestions.length) lines.push(`Suggestions: ${h.suggestions.join(" | ")}`);
      }
      return lines.join("\n");
    });
  const newCommits: RepoSnapshot["commits"] = [];
  for (const c of repo.commits) {
    if (c.sha === s.lastHead) break;
    newCommits.push(c);
  }
  const used = s.order.map((id) => s.subtasks[id]!.task.id);
  return [
    `# Update on ${s.parent.id} (round ${s.round} of at most ${maxRounds} finished)`,
    section("Subtask results", reports.join("\n\n")),
    section(
      "New commits on the base branch",
      newCommits.length ? commitLines(newCommits.slice(0, 40)) : "none",
    ),
    section("Subtask ids already used", used.join(", ")),
    `\nPlan only what is still missing for the parent's acceptance (at most ${maxSubtasks} subtasks, disjoint ` +
      'subsets of the parent\'s scope), or return an empty tasks array when it is met. Reply with {"scratchpad": "...", "tasks": [...]}.',
  ].join("\n");
}
