import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { makeRepo } from "@longshot/testkit";

/**
 * A tiny target and its sim-llm script for cluster tests: tasks that each fill their own region of the
 * same file (`src/list.ts`) plus a test file, so every merge after the first needs a rebase.
 */
const REGIONS = ["first", "last", "second"] as const;

const LIST_TS = [
  "// list helpers",
  ...REGIONS.flatMap((r, i) => [
    `// region: ${r}`,
    `// end region: ${r}`,
    "",
    `export function helper${i}(xs: readonly unknown[]): number {`,
    "  return xs.length;",
    "}",
    "",
  ]),
].join("\n");

const FNS: Record<(typeof REGIONS)[number], { fn: string; test: string }> = {
  first: {
    fn: "export function first<T>(xs: readonly T[]): T | undefined {\n  return xs[0];\n}",
    test: 'test("first", () => assert.equal(first([1, 2]), 1));',
  },
  last: {
    fn: "export function last<T>(xs: readonly T[]): T | undefined {\n  return xs[xs.length - 1];\n}",
    test: 'test("last", () => assert.equal(last([1, 2]), 2));',
  },
  second: {
    fn: "export function second<T>(xs: readonly T[]): T | undefined {\n  return xs[1];\n}",
    test: 'test("second", () => assert.equal(second([1, 2]), 2));',
  },
};

const worker = (region: (typeof REGIONS)[number], taskId = `add-${region}`) => ({
  name: `worker ${taskId}`,
  match: { system: "You are a worker", user: `## Task: ${taskId}\n` },
  turns: [
    {
      toolCalls: [
        {
          name: "edit",
          arguments: {
            path: "src/list.ts",
            edits: [
              { oldText: `// end region: ${region}`, newText: `${FNS[region].fn}\n// end region: ${region}` },
            ],
          },
        },
        {
          name: "write",
          arguments: {
            path: `test/add-${region}.test.ts`,
            content: `import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { ${region} } from "../src/list.ts";\n${FNS[region].test}\n`,
          },
        },
      ],
    },
    { toolCalls: [{ name: "bash", arguments: { command: "node --test" } }] },
    {
      content: `Done.\n\`\`\`json\n${JSON.stringify({ status: "complete", summary: `added ${region}()`, filesChanged: ["src/list.ts"], concerns: [], suggestions: [] })}\n\`\`\``,
    },
  ],
});

/** The sim-llm script: a planner that plans `count` tasks (2 or 3) once, then nothing more. */
export function listScript(count: 2 | 3 = 2) {
  const regions = REGIONS.slice(0, count);
  return {
    model: "sim-list",
    conversations: [
      {
        name: "planner",
        match: { system: "You are the root planner" },
        turns: [
          {
            content: JSON.stringify({
              scratchpad: "independent helpers",
              tasks: regions.map((r, i) => ({
                id: `add-${r}`,
                description: `Add ${r}()`,
                scope: [`test/add-${r}.test.ts`],
                acceptance: "tests pass",
                priority: 3 + i,
              })),
            }),
          },
          { content: JSON.stringify({ scratchpad: "done", tasks: [] }) },
        ],
      },
      ...regions.map((r) => worker(r)),
    ],
  };
}

/** The request prompt that makes the {@link clusterScript} planner plan one big (decomposed) task. */
export const DECOMPOSED_PROMPT = "Add all list helpers in one task";

/**
 * The 3-task script plus a second scenario selected by the request prompt ({@link DECOMPOSED_PROMPT}): the
 * planner plans ONE task with 4 scope files (so it goes to the subplanner), which splits it into three
 * subtasks `add-all-sub-1..3`, one per region.
 */
export function clusterScript() {
  const scope = ["src/list.ts", ...REGIONS.map((r) => `test/add-${r}.test.ts`)];
  const base = listScript(3);
  return {
    model: base.model,
    conversations: [
      {
        name: "planner (decomposed)",
        match: { system: "You are the root planner", user: DECOMPOSED_PROMPT },
        turns: [
          {
            content: JSON.stringify({
              scratchpad: "one big task",
              tasks: [
                {
                  id: "add-all",
                  description: "Add first(), last() and second()",
                  scope,
                  acceptance: "tests pass",
                  priority: 3,
                },
              ],
            }),
          },
          { content: JSON.stringify({ scratchpad: "done", tasks: [] }) },
        ],
      },
      {
        name: "subplanner",
        match: { system: "You are a subplanner" },
        turns: [
          {
            content: JSON.stringify({
              scratchpad: "one subtask per helper",
              tasks: REGIONS.map((r) => ({
                description: `Add ${r}()`,
                scope: [`test/add-${r}.test.ts`],
                acceptance: "tests pass",
              })),
            }),
          },
          { content: JSON.stringify({ scratchpad: "done", tasks: [] }) },
        ],
      },
      ...REGIONS.map((r, i) => worker(r, `add-all-sub-${i + 1}`)),
      ...base.conversations,
    ],
  };
}

/** Writes the script to `<dir>/script.json` and returns its path. */
export async function writeScript(dir: string, count: 2 | 3 | "cluster" = 2): Promise<string> {
  const path = join(dir, `script-${count}.json`);
  await writeFile(path, JSON.stringify(count === "cluster" ? clusterScript() : listScript(count)));
  return path;
}

/** Creates the target repository at `dir` (main with src/list.ts and one passing test). */
export function makeListRepo(dir: string): Promise<string> {
  return makeRepo(dir, {
    "package.json": JSON.stringify(
      { name: "list", type: "module", scripts: { test: "node --test" } },
      null,
      2,
    ),
    "src/list.ts": LIST_TS,
    "test/list.test.ts":
      'import { test } from "node:test";\nimport assert from "node:assert/strict";\nimport { helper0 } from "../src/list.ts";\ntest("helper0", () => assert.equal(helper0([1]), 1));\n',
  });
}
