import { emptyMetrics, Handoff, type HandoffStatus } from "@longshot/contracts";

/** A valid handoff (schema-parsed) for task `taskId`, with overrides for the fields tests vary. */
export function makeHandoff(
  taskId: string,
  overrides: {
    runId?: string;
    status?: HandoffStatus;
    head?: string | undefined;
    branch?: string;
    filesChanged?: string[];
    priority?: number;
    repo?: string;
    baseBranch?: string;
  } = {},
): Handoff {
  const runId = overrides.runId ?? "run-1";
  const branch = overrides.branch ?? `worker/${taskId}`;
  return Handoff.parse({
    taskId,
    runId,
    status: overrides.status ?? "complete",
    summary: `did ${taskId}`,
    filesChanged: overrides.filesChanged ?? ["src/a.ts"],
    concerns: [],
    suggestions: [],
    metrics: emptyMetrics(),
    branch,
    head: "head" in overrides ? overrides.head : "0123456789abcdef0123456789abcdef01234567",
    task: {
      id: taskId,
      runId,
      description: `task ${taskId}`,
      scope: ["src/a.ts"],
      acceptance: "works",
      branch,
      priority: overrides.priority ?? 5,
      depth: 0,
      attempt: 1,
      repo: overrides.repo ?? "/srv/repo",
      baseBranch: overrides.baseBranch ?? "main",
    },
  });
}
