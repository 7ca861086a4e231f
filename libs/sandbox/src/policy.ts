/**
 * The agent deadline (ms) written into the worker's input for a sandbox limit of `timeoutMs`: the limit
 * minus a reserve for the worker's startup and its commit and push after the agent (20 %, at least 2 s, at
 * most 2 min), but never less than half the limit. Keeps the worker's own timeout from racing the
 * provider's kill. Pure.
 */
export function workerDeadlineMs(timeoutMs: number): number {
  const reserve = Math.min(120_000, Math.max(2_000, Math.round(timeoutMs * 0.2)));
  return Math.max(1, Math.round(Math.max(timeoutMs - reserve, timeoutMs / 2)));
}

/** Environment variables a sandboxed worker inherits from its parent, when set (none of them secret). */
export const SANDBOX_ENV_ALLOWLIST = ["LANG", "GIT_COMMIT_NAME", "GIT_COMMIT_EMAIL"] as const;

/**
 * The complete environment of a sandboxed worker: {@link SANDBOX_ENV_ALLOWLIST} from `parent`, the
 * sandbox's own base (`HOME`, `TMPDIR`, `PATH` from the backend), then `extra` (e.g. `WORKER_COMMAND`).
 * Nothing else from `parent` passes: no key (the model relay adds credentials outside), no NATS settings, no
 * provider keys, not the host's HOME. Pure.
 */
export function workerEnv(
  parent: NodeJS.ProcessEnv,
  base: Record<string, string>,
  extra: Record<string, string | undefined>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of SANDBOX_ENV_ALLOWLIST) {
    const value = parent[name];
    if (value !== undefined && value !== "") env[name] = value;
  }
  Object.assign(env, base);
  for (const [name, value] of Object.entries(extra)) {
    if (value !== undefined) env[name] = value;
  }
  return env;
}
