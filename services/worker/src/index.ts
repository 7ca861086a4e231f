// Public surface of the worker package (for its own tests and tools; services never import it).
// The process entry is src/main.ts.

// Adapters.
export {
  ARTIFACT_EXCLUDES,
  excludeArtifacts,
  type FinalizeOptions,
  finalizeRepo,
  readRebaseState,
  rebaseInProgress,
} from "./adapters/repo.ts";
export { createContainedBashOperations, killTree, scrubEnv } from "./adapters/shell.ts";
// Pure domain: the task prompt and the handoff decision.
export * from "./domain/handoff.ts";
export * from "./domain/input.ts";
export * from "./domain/prompt.ts";
// Harnesses.
export { createCommandHarness, MissingWorkerCommandError, renderCommand } from "./harness/command.ts";
export { createPiHarness, type PiHarnessOptions } from "./harness/pi.ts";
export type { Harness, HarnessProgress, HarnessResult } from "./harness/types.ts";
