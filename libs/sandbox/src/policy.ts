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

/** Environment variables a sandboxed worker inherits from its parent, when set. */
export const SANDBOX_ENV_ALLOWLIST = ["PATH", "HOME", "LANG", "GIT_COMMIT_NAME", "GIT_COMMIT_EMAIL"] as const;

/**
 * The complete environment of a sandboxed worker: {@link SANDBOX_ENV_ALLOWLIST} from `parent`, then
 * `extra` (e.g. `TMPDIR`, `WORKER_COMMAND`), then the model key as `LONGSHOT_LLM_API_KEY` when non-empty.
 * Nothing else from `parent` passes (no NATS_URL, NATS credentials or provider keys). Pure.
 */
export function sandboxEnv(
  parent: NodeJS.ProcessEnv,
  extra: Record<string, string | undefined>,
  apiKey?: string,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of SANDBOX_ENV_ALLOWLIST) {
    const value = parent[name];
    if (value !== undefined && value !== "") env[name] = value;
  }
  for (const [name, value] of Object.entries(extra)) {
    if (value !== undefined) env[name] = value;
  }
  if (apiKey) env.LONGSHOT_LLM_API_KEY = apiKey;
  return env;
}
