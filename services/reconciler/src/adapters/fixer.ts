import type { EventPayload, SweepCheck } from "@longshot/contracts";
import type { ChatClient } from "@longshot/llm";
import { z } from "zod";

/** The model's answer: a bare array of ≤ 5 fix tasks (extra ones and extra scope files are cut, not fatal). */
export const FixTasksOutput = z
  .array(
    z.object({
      id: z.string().optional(),
      description: z.string().min(1),
      scope: z.array(z.string()).default([]),
      acceptance: z.string().default("the failing check passes"),
    }),
  )
  .transform((tasks) =>
    tasks
      .slice(0, 5)
      .map((t) => ({ description: t.description, scope: t.scope.slice(0, 3), acceptance: t.acceptance })),
  );

const tail = (s: string, n: number) => (s.length > n ? `…${s.slice(-n)}` : s);

/**
 * Builds the reconciler's user message for a red sweep: failing checks by category order (conflict markers,
 * build, typecheck, tests) with the command and the output tail (≤ 8000 chars each).
 */
export function fixPrompt(
  sha: string,
  baseBranch: string,
  checks: readonly SweepCheck[],
  conflictFiles: readonly string[],
): string {
  const order = ["conflict-markers", "install", "build", "typecheck", "test"];
  const failing = checks.filter((c) => !c.ok).sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  return [
    `The base branch \`${baseBranch}\` at ${sha.slice(0, 12)} is red.`,
    ...(conflictFiles.length ? [`\n## Conflict markers\n\n${conflictFiles.slice(0, 20).join("\n")}`] : []),
    ...failing
      .filter((c) => c.name !== "conflict-markers")
      .map(
        (c) =>
          `\n## ${c.name} failed (exit ${c.exitCode ?? "killed"})\n\n$ ${c.command}\n\n${tail(c.output, 8000)}`,
      ),
    '\nReply with a bare JSON array of at most 5 fix tasks: [{"description","scope","acceptance"}]; scope ≤ 3 files; cite the exact error.',
  ].join("\n");
}

/** Asks the model for fix tasks for a red sweep. @throws ModelOutputError / SDK errors (caller retries later). */
export async function proposeFixes(
  llm: ChatClient,
  systemPrompt: string,
  input: {
    runId: string;
    sha: string;
    baseBranch: string;
    checks: readonly SweepCheck[];
    conflictFiles: readonly string[];
  },
): Promise<{ tasks: EventPayload<"fix.requested">["tasks"]; tokens: number }> {
  const res = await llm.completeJson(
    [
      { role: "system", content: systemPrompt },
      { role: "user", content: fixPrompt(input.sha, input.baseBranch, input.checks, input.conflictFiles) },
    ],
    FixTasksOutput,
    { runId: input.runId, taskId: "reconciler" },
  );
  return { tasks: res.value, tokens: res.usage.totalTokens };
}
