import type { Task } from "@longshot/contracts";

/** Heading of the prompt section carrying `task.context` (a previous attempt's handoff, check output, …). */
export const CONTEXT_HEADING = "## Context from earlier attempts";

/**
 * The state of a conflict-fix clone when the worker starts (see `readRebaseState`): `inProgress` when the
 * provider's `git rebase origin/<baseBranch>` stopped on conflicts, with the unmerged paths in `files`
 * (repo-relative, sorted); `inProgress: false` when the rebase went through cleanly.
 */
export interface RebaseState {
  inProgress: boolean;
  files: string[];
}

/** Options of {@link buildTaskPrompt}. */
export interface TaskPromptOptions {
  /** Conflict-fix tasks only (`task.conflictBranch` set): the rebase state of the clone. */
  rebase?: RebaseState;
}

/**
 * Builds the user prompt for one task. Pure.
 *
 * The text starts with the line `## Task: <task.id>` followed by a newline (sim-llm scripts and logs key on
 * it), then the description, the scope (repo-relative files), the acceptance criteria, the section
 * {@link CONTEXT_HEADING} with `task.context` when it is set, the branch, and the instructions ending with a
 * fenced ```json handoff block `{status, summary, filesChanged, concerns, suggestions}` that
 * {@link parseAgentHandoff} reads back.
 *
 * Conflict-fix tasks (`task.conflictBranch` set) get a different branch section and instructions: with
 * `opts.rebase.inProgress` the branch is mid-rebase onto `origin/<baseBranch>` with conflicts in
 * `opts.rebase.files`, to be resolved keeping both sides' intent, `git add`-ed and continued with
 * `GIT_EDITOR=true git rebase --continue` until the rebase finishes, then tested; without a rebase in
 * progress the branch was rebased cleanly and only needs verifying.
 */
export function buildTaskPrompt(task: Task, opts: TaskPromptOptions = {}): string {
  const scope = task.scope.length > 0 ? task.scope.map((f) => `- ${f}`).join("\n") : "- (no files listed)";
  const acceptance = task.acceptance.trim().length > 0 ? task.acceptance.trim() : "(none given)";
  const context = task.context?.trim() ?? "";
  const conflictBranch = task.conflictBranch;
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
    ...(context.length > 0 ? [CONTEXT_HEADING, context, ""] : []),
    ...(conflictBranch !== undefined
      ? conflictSections(task, conflictBranch, opts.rebase ?? { inProgress: false, files: [] })
      : normalSections(task)),
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

function normalSections(task: Task): string[] {
  return [
    "### Branch",
    `You are on branch \`${task.branch}\`, started from \`${task.baseBranch}\`. Do not switch branches.`,
    "",
    "### Instructions",
    "Complete this task. Stay within the scoped files. Commit your changes with git when done",
    "(uncommitted changes are committed for you, but say what you did in the summary).",
  ];
}

function conflictSections(task: Task, conflictBranch: string, rebase: RebaseState): string[] {
  const base = `origin/${task.baseBranch}`;
  if (!rebase.inProgress) {
    return [
      "### Branch",
      `You are on branch \`${task.branch}\`: the work of branch \`${conflictBranch}\`, rebased onto \`${base}\`.`,
      "The rebase finished without conflicts. Do not switch branches and do not rebase again.",
      "",
      "### Instructions",
      `Check that the combined code still works: run the build and the tests, and fix what the rebase broke`,
      "while keeping the intent of both the branch and the base branch. Commit your fixes with git",
      "(uncommitted changes are committed for you).",
    ];
  }
  const files = rebase.files.length > 0 ? rebase.files.map((f) => `- ${f}`).join("\n") : "- (none listed)";
  return [
    "### Branch",
    `You are on branch \`${task.branch}\`, a copy of \`${conflictBranch}\` in the middle of a rebase onto \`${base}\`.`,
    "The rebase stopped with conflicts in these files (`git diff --name-only --diff-filter=U`):",
    files,
    "",
    "### Instructions",
    "Resolve the conflicts:",
    `1. In each conflicted file, combine both sides, keeping the intent of the branch's change and of what landed on \`${task.baseBranch}\`.`,
    "   Remove every conflict marker (`<<<<<<<`, `=======`, `>>>>>>>`).",
    "2. `git add` the resolved files, then run `GIT_EDITOR=true git rebase --continue`.",
    "3. If the rebase stops again on a later commit, resolve and continue again; repeat until it finishes",
    "   (`git status` no longer says a rebase is in progress).",
    "4. Run the build and the tests, fix what fails, and commit the fixes.",
    "Never run `git rebase --abort` or `git rebase --skip`, never switch branches, never push: the branch is",
    "pushed for you only when the rebase has finished. An unfinished rebase fails the task.",
  ];
}
