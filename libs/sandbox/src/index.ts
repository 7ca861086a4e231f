/**
 * @longshot/sandbox: where workers and checks run. The `SandboxProvider` (task in → handoff out, branch
 * pushed from outside; checks in a sandbox), its backends (`local`: bubblewrap boxes; `unsafe-local`: plain
 * processes; `modal`: Modal sandboxes), the box primitive, the model relay, and the helpers dispatchers
 * share (`abortReason`, `workerDeadlineMs`, `workerEnv`). The Modal backend is its own entry point,
 * `@longshot/sandbox/modal`: the `modal` SDK (~34 MB of resident memory, ~0.25 s to load) is loaded only by a
 * process that uses it (`sandboxBackendFromConfig` with `SANDBOX_PROVIDER=modal`).
 */
export type {
  SandboxBackend,
  SandboxCapabilities,
  SandboxExecOptions,
  SandboxHandle,
  SandboxProcess,
  SandboxSpec,
} from "./backend.ts";
export {
  BOX_HOME,
  type Box,
  type BoxExecOptions,
  type BoxLimits,
  type BoxMount,
  type BoxOptions,
  chownToBox,
  createBox,
  type IsolationProbe,
  IsolationUnavailableError,
  probeIsolation,
} from "./box.ts";
export {
  type CheckOverrides,
  type CommitCheckOptions,
  type CommitCheckResult,
  checkCommit,
  type PlannedCheck,
  planChecks,
  planChecksAt,
} from "./checks.ts";
export { abortReason } from "./failed-handoff.ts";
export { SandboxProviderError, sandboxBackendFromConfig, sandboxProviderFromConfig } from "./from-config.ts";
export { createLocalBackend, type LocalBackendOptions } from "./local.ts";
export {
  createModelRelay,
  type ModelRelayStats,
  type ModelRelayTarget,
  rewriteChatBody,
} from "./model-relay.ts";
export { SANDBOX_ENV_ALLOWLIST, workerDeadlineMs, workerEnv } from "./policy.ts";
export {
  type CheckCommand,
  type CheckRunBase,
  type CheckRunSpec,
  createSandboxProvider,
  type SandboxLlm,
  type SandboxProvider,
  type SandboxProviderOptions,
  type SandboxResult,
  type SandboxRunOptions,
} from "./provider.ts";
