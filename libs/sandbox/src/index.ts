/**
 * @longshot/sandbox: where workers run. The `SandboxProvider` contract, the `local` provider (temp clone +
 * child process group), and the helpers dispatchers share (`failedHandoff`, `workerDeadlineMs`,
 * `sandboxEnv`).
 */
export { type ConflictFixSetup, ConflictSetupError, prepareConflictFix } from "./conflict.ts";
export { failedHandoff } from "./failed-handoff.ts";
export { createLocalSandboxProvider, type LocalSandboxOptions, reapOrphanSandboxes } from "./local.ts";
export { SANDBOX_ENV_ALLOWLIST, sandboxEnv, workerDeadlineMs } from "./policy.ts";
export type { SandboxLlm, SandboxProvider, SandboxResult, SandboxRunOptions } from "./provider.ts";
