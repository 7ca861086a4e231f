/**
 * Builds examples/todo-api.sim.json, the sim-llm script of the todo-api demo, from the sources under
 * examples/todo-api.features/:
 *
 * - `plan.json`: the root planner's scratchpads and the task order;
 * - `<task id>/task.json`: the task as the planner emits it (id, priority, description, scope, acceptance),
 *   the worker's `edit` calls (`edits`, Pi's `{path, edits: [{oldText, newText}]}` shape) and its handoff
 *   (summary, concerns, suggestions); optionally:
 *   - `outOfScope`: files the worker changes although they are not in its scope (a concern must name each);
 *   - `firstAttempt`: a first attempt (its files in `<task id>/attempt-1/files/`, its `edits` optional) that ends
 *     `failed`/`blocked`, or hands off `complete` with a change that breaks the project's tests (the merge queue
 *     rejects it); the task's own files and handoff are then the second attempt's, the one the planner's retry
 *     runs with the failure in its context;
 *   - `subplanner` + `subtasks`: a task of 4+ files that the subplanner splits; each subtask has the same
 *     fields as a task (its files in `<task id>/sub-<n>/files/`) and the parent has no worker of its own;
 * - `<task id>/files/<repo path>`: the files the worker creates with `write`;
 * - `conflict-fix/task.json` + `files/`: the conflict-fix worker of the tasks in `resolves` (whichever of
 *   them merges second conflicts, so each gets a `<id>-cf` conversation): it writes the resolved files,
 *   continues the rebase, tests and hands off;
 * - `reconciler-fix/task.json` + `files/`: the reconciler's answer to a red main (`reconciler`, the fix tasks)
 *   and the worker of every fix task `fix-NNN`, which writes the fixed files whole.
 *
 * A worker conversation runs one turn of `write` calls, one turn of `edit` calls (if any), one `bash` turn
 * running `npm test`, then the final text with the fenced ```json handoff. Calls in one turn touch
 * different files, so Pi may run them in parallel.
 *
 * Before writing it checks scopes (each worker's changes, subtask scopes disjoint subsets of the parent's,
 * fix tasks of at most 3 files), that every `oldText` occurs exactly once in the template file, and that
 * sim-llm accepts the script (`parseScript`).
 *
 * Usage: `node examples/build-todo-api-script.ts` (writes the file), `--check` (exit 1 when the committed
 * file is stale).
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { parseScript } from "../services/sim-llm/src/index.ts";

const here = new URL(".", import.meta.url).pathname;
const templateDir = join(here, "todo-api");
const featuresDir = join(here, "todo-api.features");
const outFile = join(here, "todo-api.sim.json");

/** A task of this size or more goes to the subplanner (libs/contracts routing: DECOMPOSE_MIN_SCOPE). */
const DECOMPOSE_MIN_SCOPE = 4;
/** Heading of the worker prompt section that carries a retry's context (services/worker CONTEXT_HEADING). */
const CONTEXT_HEADING = "## Context from earlier attempts";
/** What a conflict-fix worker runs once the conflicted files are resolved (as its prompt instructs). */
const CONTINUE_REBASE = "git add -A && GIT_EDITOR=true git rebase --continue";

/** One `edit` call of Pi: every oldText must occur exactly once in the file before the call. */
interface EditCall {
  path: string;
  edits: { oldText: string; newText: string }[];
}

/** What a worker reports in its handoff besides status and files. */
interface HandoffText {
  summary: string;
  concerns: string[];
  suggestions: string[];
}

/** A subtask of a decomposed task, as the subplanner emits it plus what its worker does. */
interface SubtaskSource extends HandoffText {
  id: string;
  description: string;
  scope: string[];
  acceptance: string;
  priority?: number;
  edits: EditCall[];
}

/** `<task id>/task.json`. */
interface TaskSource extends HandoffText {
  id: string;
  priority: number;
  description: string;
  scope: string[];
  acceptance: string;
  edits: EditCall[];
  outOfScope?: string[];
  firstAttempt?: HandoffText & { status: "failed" | "blocked" | "complete"; edits?: EditCall[] };
  subplanner?: { scratchpad: string; doneScratchpad: string };
  subtasks?: SubtaskSource[];
}

/** `plan.json`. */
interface PlanSource {
  scratchpad: string;
  order: string[];
  doneScratchpad: string;
}

/** `conflict-fix/task.json`. */
interface ConflictFixSource extends HandoffText {
  resolves: string[];
}

/** `reconciler-fix/task.json`. */
interface ReconcilerFixSource extends HandoffText {
  reconciler: { id?: string; description: string; scope: string[]; acceptance: string }[];
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, "utf8")) as T;
}

/** Files under `dir`, as sorted paths relative to it (forward slashes); none when it does not exist. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split("\\").join("/"))
    .sort();
}

function countOccurrences(text: string, needle: string): number {
  let count = 0;
  for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + 1)) count++;
  return count;
}

/** A regex matcher (sim-llm's `/source/` form) for text that starts with `prefix` and later contains `part`. */
function startsWithThenContains(prefix: string, part: string): string {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&").replace(/\n/g, "\\n");
  return `/^${esc(prefix)}[\\s\\S]*${esc(part)}\\n/`;
}

/** What one worker session changes: `write` calls from a files dir and `edit` calls. */
interface WorkerChanges {
  writes: { name: "write"; arguments: { path: string; content: string } }[];
  edits: EditCall[];
  /** Every file written or edited, in call order. */
  changed: string[];
}

/** Reads the `write` calls of `filesDir` and checks every `edit` against the template. */
async function workerChanges(
  label: string,
  filesDir: string,
  edits: EditCall[],
  problems: string[],
): Promise<WorkerChanges> {
  const written = await listFiles(filesDir);
  const writes = await Promise.all(
    written.map(async (path) => ({
      name: "write" as const,
      arguments: { path, content: await readFile(join(filesDir, path), "utf8") },
    })),
  );
  for (const call of edits) {
    const original = await readFile(join(templateDir, call.path), "utf8").catch(() => undefined);
    if (original === undefined)
      problems.push(`${label}: edits ${call.path}, which the template does not have`);
    for (const e of call.edits) {
      const n = original === undefined ? 0 : countOccurrences(original, e.oldText);
      if (original !== undefined && n !== 1) {
        problems.push(
          `${label}: oldText occurs ${n} times in ${call.path}: ${JSON.stringify(e.oldText.slice(0, 60))}`,
        );
      }
    }
  }
  const changed = [...written, ...edits.map((e) => e.path)];
  if (changed.length === 0) problems.push(`${label}: changes no file`);
  if (new Set(changed).size !== changed.length) problems.push(`${label}: writes and edits the same file`);
  return { writes, edits, changed };
}

/**
 * Checks that a worker changes only files of `scope`, or files of `outOfScope` that one of its concerns
 * names (the worker owns up to it).
 */
function checkScope(
  label: string,
  changed: string[],
  scope: string[],
  outOfScope: string[],
  concerns: string[],
  problems: string[],
): void {
  for (const path of changed) {
    if (scope.includes(path)) continue;
    if (!outOfScope.includes(path)) problems.push(`${label}: changes ${path}, outside its scope`);
    else if (!concerns.some((c) => c.includes(path)))
      problems.push(`${label}: changes ${path} outside its scope without a concern naming it`);
  }
  for (const path of outOfScope) {
    if (scope.includes(path)) problems.push(`${label}: outOfScope lists ${path}, which is in its scope`);
  }
}

/** The final message of a worker: its summary and the fenced ```json handoff. */
function finalTurn(status: string, text: HandoffText, changed: string[]): { content: string } {
  const handoff = {
    status,
    summary: text.summary,
    filesChanged: changed,
    concerns: text.concerns,
    suggestions: text.suggestions,
  };
  return { content: `${text.summary}\n\n\`\`\`json\n${JSON.stringify(handoff, null, 2)}\n\`\`\`` };
}

const bash = (command: string) => ({ toolCalls: [{ name: "bash", arguments: { command } }] });
/** How a worker runs the target's tests: its `test` script (`node --test --test-isolation=none`). */
const TEST_COMMAND = "npm test";

/** The turns of an ordinary worker: writes, edits, `npm test`, handoff. */
function workerTurns(c: WorkerChanges, status: string, text: HandoffText): unknown[] {
  const turns: unknown[] = [];
  if (c.writes.length > 0) turns.push({ toolCalls: c.writes });
  if (c.edits.length > 0) {
    turns.push({
      toolCalls: c.edits.map((e) => ({ name: "edit", arguments: { path: e.path, edits: e.edits } })),
    });
  }
  turns.push(bash(TEST_COMMAND));
  turns.push(finalTurn(status, text, c.changed));
  return turns;
}

function describeChanges(c: WorkerChanges): string {
  const written = c.writes.map((w) => w.arguments.path);
  return [
    written.length ? `writes ${written.join(", ")}` : "",
    c.edits.length ? `edits ${c.edits.map((e) => e.path).join(", ")}` : "",
  ]
    .filter(Boolean)
    .join("; ");
}

function workerConversation(name: string, description: string, user: string, turns: unknown[]): unknown {
  return { name, description, match: { system: "You are a worker", user }, after: "error", turns };
}

/** Builds the script object; throws an Error listing every problem found in the sources. */
export async function buildScript(): Promise<unknown> {
  const plan = await readJson<PlanSource>(join(featuresDir, "plan.json"));
  const problems: string[] = [];
  const tasks: TaskSource[] = [];
  const workers: unknown[] = [];
  const subplanners: unknown[] = [];
  /** Files each planned task's worker changes (for the conflict-fix check). */
  const changedBy = new Map<string, string[]>();

  for (const id of plan.order) {
    const task = await readJson<TaskSource>(join(featuresDir, id, "task.json"));
    if (task.id !== id) problems.push(`${id}/task.json has id ${task.id}`);
    tasks.push(task);

    if (task.subplanner || task.subtasks) {
      const subtasks = task.subtasks ?? [];
      if (!task.subplanner || subtasks.length < 2)
        problems.push(`${id}: a decomposed task needs "subplanner" and at least 2 subtasks`);
      if (task.scope.length < DECOMPOSE_MIN_SCOPE)
        problems.push(`${id}: has subtasks but only ${task.scope.length} files (the subplanner needs 4+)`);
      const claimed = new Set<string>();
      for (const [i, sub] of subtasks.entries()) {
        const subId = `${id}-sub-${i + 1}`;
        for (const f of sub.scope) {
          if (!task.scope.includes(f)) problems.push(`${subId}: scope file ${f} is not in ${id}'s scope`);
          if (claimed.has(f)) problems.push(`${subId}: scope file ${f} is already another subtask's`);
          claimed.add(f);
        }
        const changes = await workerChanges(
          subId,
          join(featuresDir, id, `sub-${i + 1}`, "files"),
          sub.edits,
          problems,
        );
        checkScope(subId, changes.changed, sub.scope, [], sub.concerns, problems);
        workers.push(
          workerConversation(
            `worker ${subId}`,
            `Worker of subtask ${subId} (of ${id}): ${describeChanges(changes)}.`,
            `## Task: ${subId}\n`,
            workerTurns(changes, "complete", sub),
          ),
        );
      }
      subplanners.push({
        name: `subplanner ${id}`,
        description: `Turn 0 splits ${id} into ${subtasks.length} subtasks (ids ${id}-sub-1…); every later turn (after a batch) has nothing left.`,
        match: { system: "You are a subplanner", user: `# Parent task: ${id}\n` },
        turns: [
          {
            content: JSON.stringify(
              {
                scratchpad: task.subplanner?.scratchpad ?? "",
                tasks: subtasks.map((s) => ({
                  id: s.id,
                  description: s.description,
                  scope: s.scope,
                  acceptance: s.acceptance,
                  ...(s.priority !== undefined ? { priority: s.priority } : {}),
                })),
              },
              null,
              2,
            ),
          },
          {
            content: JSON.stringify(
              { scratchpad: task.subplanner?.doneScratchpad ?? "", tasks: [] },
              null,
              2,
            ),
          },
        ],
      });
      continue;
    }

    if (task.scope.length > 3) problems.push(`${id}: scope has ${task.scope.length} files (max 3)`);
    const changes = await workerChanges(id, join(featuresDir, id, "files"), task.edits, problems);
    checkScope(id, changes.changed, task.scope, task.outOfScope ?? [], task.concerns, problems);
    changedBy.set(id, changes.changed);

    if (task.firstAttempt) {
      const first = await workerChanges(
        `${id} attempt 1`,
        join(featuresDir, id, "attempt-1", "files"),
        task.firstAttempt.edits ?? [],
        problems,
      );
      checkScope(`${id} attempt 1`, first.changed, task.scope, [], task.firstAttempt.concerns, problems);
      if (!["failed", "blocked", "complete"].includes(task.firstAttempt.status))
        problems.push(`${id}: firstAttempt.status must be failed, blocked or complete`);
      const fate =
        task.firstAttempt.status === "complete"
          ? "hands off complete although its change breaks an existing test; the merge queue rejects it"
          : `its tests fail and it hands off ${task.firstAttempt.status}`;
      // The retry's prompt also starts with `## Task: <id>\n`: its conversation must come first.
      workers.push(
        workerConversation(
          `worker ${id} (attempt 2)`,
          `Second attempt of ${id} (its prompt carries the first attempt's outcome): ${describeChanges(changes)}; completes.`,
          startsWithThenContains(`## Task: ${id}\n`, CONTEXT_HEADING),
          workerTurns(changes, "complete", task),
        ),
        workerConversation(
          `worker ${id}`,
          `First attempt of ${id}: ${describeChanges(first)}; ${fate}.`,
          `## Task: ${id}\n`,
          workerTurns(first, task.firstAttempt.status, task.firstAttempt),
        ),
      );
      continue;
    }

    workers.push(
      workerConversation(
        `worker ${id}`,
        `Worker of task ${id}: ${describeChanges(changes)}.${task.outOfScope?.length ? ` Changes ${task.outOfScope.join(", ")} outside its scope (see its concerns).` : ""}`,
        `## Task: ${id}\n`,
        workerTurns(changes, "complete", task),
      ),
    );
  }

  // Conflict-fix: whichever of `resolves` merges second conflicts; its `<id>-cf` worker resolves.
  const cfDir = join(featuresDir, "conflict-fix");
  const cf = await readJson<ConflictFixSource>(join(cfDir, "task.json"));
  const cfChanges = await workerChanges("conflict-fix", join(cfDir, "files"), [], problems);
  for (const path of cfChanges.changed) {
    const sides = cf.resolves.filter((id) => changedBy.get(id)?.includes(path));
    if (sides.length !== cf.resolves.length)
      problems.push(
        `conflict-fix: ${path} is not changed by every task of resolves (${cf.resolves.join(", ")})`,
      );
  }
  if (cf.resolves.length < 2) problems.push("conflict-fix: resolves needs two tasks");
  const conflictFixes = cf.resolves.map((id) =>
    workerConversation(
      `worker ${id}-cf`,
      `Conflict-fix of ${id} (if it merged after ${cf.resolves.filter((x) => x !== id).join(", ")}): writes the resolved ${cfChanges.changed.join(", ")}, continues the rebase, tests.`,
      `## Task: ${id}-cf\n`,
      [
        { toolCalls: cfChanges.writes },
        bash(CONTINUE_REBASE),
        bash(TEST_COMMAND),
        finalTurn("complete", cf, cfChanges.changed),
      ],
    ),
  );

  // Reconciler fix tasks: the model's answer to a red main, and the worker of every fix task.
  const fixDir = join(featuresDir, "reconciler-fix");
  const fix = await readJson<ReconcilerFixSource>(join(fixDir, "task.json"));
  const fixChanges = await workerChanges("reconciler-fix", join(fixDir, "files"), [], problems);
  if (fix.reconciler.length < 1 || fix.reconciler.length > 5)
    problems.push("reconciler-fix: 1 to 5 fix tasks");
  for (const t of fix.reconciler) {
    if (t.scope.length < 1 || t.scope.length > 3)
      problems.push("reconciler-fix: a fix task has 1 to 3 files");
  }
  checkScope(
    "reconciler-fix",
    fixChanges.changed,
    fix.reconciler.flatMap((t) => t.scope),
    [],
    fix.concerns,
    problems,
  );

  if (problems.length > 0)
    throw new Error(`todo-api script sources are invalid:\n- ${problems.join("\n- ")}`);

  const plannerTasks = tasks.map((t) => ({
    id: t.id,
    description: t.description,
    scope: t.scope,
    acceptance: t.acceptance,
    priority: t.priority,
  }));
  const script = {
    description:
      "Longshot demo: build examples/todo-api (SPEC.md, FEATURES.json). Generated by examples/build-todo-api-script.ts from examples/todo-api.features/; do not edit by hand.",
    model: "sim-1",
    latency: { ttftMs: 100, tokensPerSecond: 4000 },
    conversations: [
      {
        name: "planner",
        description: "Turn 0 plans every feature at once; every later turn has nothing new to plan.",
        match: { system: "You are the root planner" },
        turns: [
          { content: JSON.stringify({ scratchpad: plan.scratchpad, tasks: plannerTasks }, null, 2) },
          { content: JSON.stringify({ scratchpad: plan.doneScratchpad, tasks: [] }, null, 2) },
        ],
      },
      ...subplanners,
      {
        name: "subplanner",
        description: "Any other task sent to the subplanner is atomic.",
        match: { system: "You are a subplanner" },
        turns: [{ content: JSON.stringify({ scratchpad: "Atomic: no decomposition needed.", tasks: [] }) }],
      },
      {
        name: "reconciler",
        description:
          "The safety net: if main ever goes red with the platform test asserting an old message (the merge queue rejects such a change before it lands, so a demo run with verification never needs it), every red sweep gets the same fix task (the planner drops it while one for the same failure is in flight).",
        match: { system: "You are the reconciler" },
        // Fenced: libs/llm's extractJson tries the first `{…}` of a bare array before the array itself.
        turns: [{ content: `\`\`\`json\n${JSON.stringify(fix.reconciler, null, 2)}\n\`\`\`` }],
      },
      ...workers,
      ...conflictFixes,
      workerConversation(
        "worker fix",
        `Worker of every reconciler fix task (fix-001, …): writes ${fixChanges.changed.join(", ")} whole, so a repeat finds nothing to change.`,
        "/^## Task: fix-\\d+\\n/",
        [
          { toolCalls: fixChanges.writes },
          bash(TEST_COMMAND),
          finalTurn("complete", fix, fixChanges.changed),
        ],
      ),
    ],
  };
  parseScript(script, outFile);
  return script;
}

async function main(): Promise<void> {
  const text = `${JSON.stringify(await buildScript(), null, 2)}\n`;
  if (process.argv.includes("--check")) {
    const current = await readFile(outFile, "utf8").catch(() => "");
    if (current !== text) {
      console.error(
        `${relative(process.cwd(), outFile)} is stale: run node examples/build-todo-api-script.ts`,
      );
      process.exit(1);
    }
    console.log(`${relative(process.cwd(), outFile)} is up to date`);
    return;
  }
  await writeFile(outFile, text);
  console.log(`wrote ${relative(process.cwd(), outFile)}`);
}

if (import.meta.main) await main();
