import type { Task } from "@longshot/contracts";

/**
 * Builds the user prompt for one task. Pure.
 *
 * The text starts with the line `## Task: <task.id>` followed by a newline (sim-llm scripts and logs key on
 * it), then the description, the scope (repo-relative files), the acceptance criteria, the branch, and the
 * instruction to finish with a fenced ```json handoff block `{status, summary, filesChanged, concerns,
 * suggestions}` that {@link parseAgentHandoff} reads back.
 */
export function buildTaskPrompt(task: Task): string {
  const scope = task.scope.length > 0 ? task.scope.map((f) => `- ${f}`).join("\n") : "- (no files listed)";
  const acceptance = task.acceptance.trim().length > 0 ? task.acceptance.trim() : "(none given)";
  return [
    `## Task: ${task.id}`,
    "",
    "### Description",
    task.description.trim(),
    "",
    "### Scope (files you may create or modify)",
    scope,
    "",
    "### Acceptance",
    acceptance,
    "",
    "### Branch",
    `You are on branch \`${task.branch}\`, started from \`${task.baseBranch}\`. Do not switch branches.`,
    "",
    "### Instructions",
    "Complete this task. Stay within the scoped files. Commit your changes with git when done",
    "(uncommitted changes are committed for you, but say what you did in the summary).",
    "Finish your final message with exactly one fenced json block, the handoff:",
    "",
    "```json",
    "{",
    '  "status": "complete | partial | blocked | failed",',
    '  "summary": "what you did, in one or two sentences",',
    '  "filesChanged": ["path/relative/to/repo"],',
    '  "concerns": ["risks, shortcuts, things the planner should know"],',
    '  "suggestions": ["follow-up work you recommend"]',
    "}",
    "```",
    "",
  ].join("\n");
}
