/**
 * Builds examples/todo-api.sim.json, the sim-llm script of the todo-api demo, from the sources under
 * examples/todo-api.features/:
 *
 * - `plan.json`: the root planner's scratchpads and the task order;
 * - `<task id>/task.json`: the task as the planner emits it (id, priority, description, scope, acceptance),
 *   the worker's `edit` calls (`edits`, Pi's `{path, edits: [{oldText, newText}]}` shape) and its handoff
 *   (summary, concerns, suggestions);
 * - `<task id>/files/<repo path>`: the files the worker creates with `write`.
 *
 * Every worker conversation runs: one turn of `write` calls, one turn of `edit` calls (if any), one `bash`
 * turn running `node --test`, then the final text with the fenced ```json handoff. Calls in one turn touch
 * different files, so Pi may run them in parallel.
 *
 * Before writing it checks that the worker stays in its scope, that every `oldText` occurs exactly once in
 * the template file, and that sim-llm accepts the script (`parseScript`).
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

/** One `edit` call of Pi: every oldText must occur exactly once in the file before the call. */
interface EditCall {
  path: string;
  edits: { oldText: string; newText: string }[];
}

/** `<task id>/task.json`. */
interface TaskSource {
  id: string;
  priority: number;
  description: string;
  scope: string[];
  acceptance: string;
  edits: EditCall[];
  summary: string;
  concerns: string[];
  suggestions: string[];
}

/** `plan.json`. */
interface PlanSource {
  scratchpad: string;
  order: string[];
  doneScratchpad: string;
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, "utf8")) as T;
}

/** Files under `dir`, as sorted paths relative to it (forward slashes). */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
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

/** Builds the script object; throws an Error listing every problem found in the sources. */
export async function buildScript(): Promise<unknown> {
  const plan = await readJson<PlanSource>(join(featuresDir, "plan.json"));
  const problems: string[] = [];
  const tasks: TaskSource[] = [];
  const workers: unknown[] = [];
  for (const id of plan.order) {
    const task = await readJson<TaskSource>(join(featuresDir, id, "task.json"));
    if (task.id !== id) problems.push(`${id}/task.json has id ${task.id}`);
    tasks.push(task);
    const filesDir = join(featuresDir, id, "files");
    const written = await listFiles(filesDir);
    const writes = await Promise.all(
      written.map(async (path) => ({
        name: "write",
        arguments: { path, content: await readFile(join(filesDir, path), "utf8") },
      })),
    );
    for (const call of task.edits) {
      const original = await readFile(join(templateDir, call.path), "utf8").catch(() => undefined);
      if (original === undefined)
        problems.push(`${id}: edits ${call.path}, which the template does not have`);
      for (const e of call.edits) {
        const n = original === undefined ? 0 : countOccurrences(original, e.oldText);
        if (original !== undefined && n !== 1) {
          problems.push(
            `${id}: oldText occurs ${n} times in ${call.path}: ${JSON.stringify(e.oldText.slice(0, 60))}`,
          );
        }
      }
    }
    const changed = [...written, ...task.edits.map((e) => e.path)];
    for (const path of changed) {
      if (!task.scope.includes(path)) problems.push(`${id}: changes ${path}, outside its scope`);
    }
    if (task.scope.length > 3) problems.push(`${id}: scope has ${task.scope.length} files (max 3)`);
    const handoff = {
      status: "complete",
      summary: task.summary,
      filesChanged: changed,
      concerns: task.concerns,
      suggestions: task.suggestions,
    };
    const turns: unknown[] = [];
    if (writes.length > 0) turns.push({ toolCalls: writes });
    if (task.edits.length > 0) {
      turns.push({
        toolCalls: task.edits.map((e) => ({ name: "edit", arguments: { path: e.path, edits: e.edits } })),
      });
    }
    turns.push({ toolCalls: [{ name: "bash", arguments: { command: "node --test" } }] });
    turns.push({ content: `${task.summary}\n\n\`\`\`json\n${JSON.stringify(handoff, null, 2)}\n\`\`\`` });
    workers.push({
      name: `worker ${id}`,
      description: `Worker of task ${id}: writes ${written.join(", ")}${task.edits.length ? `; edits ${task.edits.map((e) => e.path).join(", ")}` : ""}.`,
      match: { system: "You are a worker", user: `## Task: ${id}\n` },
      after: "error",
      turns,
    });
  }
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
      {
        name: "subplanner",
        description: "No task of this plan has 4 or more files; should one be decomposed, it is atomic.",
        match: { system: "You are a subplanner" },
        turns: [{ content: JSON.stringify({ scratchpad: "Atomic: no decomposition needed.", tasks: [] }) }],
      },
      {
        name: "reconciler",
        description: "Main stays green in this demo: no fix tasks.",
        match: { system: "You are the reconciler" },
        turns: [{ content: "[]" }],
      },
      ...workers,
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
