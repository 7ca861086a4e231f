import type { Task } from "@longshot/contracts";

/** Issues and revokes per-task bearer tokens at the LLM gateway's admin API (services/llm-gateway). */
export interface TokenIssuer {
  /** A token for `task` (`POST /admin/tokens`), with the configured token budget. @throws on HTTP errors. */
  issue(task: Task): Promise<string>;
  /**
   * Revokes a token (`DELETE /admin/tokens`). Failures are ignored: the attempt is over either way, and a token
   * left behind only stays usable within its task's budget (the gateway keeps grants in NATS KV).
   */
  revoke(token: string): Promise<void>;
}

/**
 * The dispatcher's token issuer: sandboxes get a gateway token scoped to their run and task (session
 * affinity, accounting, budget) instead of any provider key. `adminUrl` is the gateway's base URL;
 * `budgetTokens` (0 = none) caps each task's tokens; `ttlMs` is the token's lifetime (ms).
 */
export function createTokenIssuer(
  adminUrl: string,
  adminToken: string,
  budgetTokens: number,
  ttlMs?: number,
): TokenIssuer {
  const base = adminUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
  const headers = { authorization: `Bearer ${adminToken}`, "content-type": "application/json" };
  return {
    async issue(task) {
      const res = await fetch(`${base}/admin/tokens`, {
        method: "POST",
        headers,
        body: JSON.stringify({
          runId: task.runId,
          taskId: task.id,
          role: "worker",
          ...(budgetTokens > 0 ? { budgetTokens } : {}),
          ...(ttlMs !== undefined ? { ttlMs } : {}),
        }),
      });
      if (!res.ok)
        throw new Error(
          `gateway refused a task token: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`,
        );
      return ((await res.json()) as { token: string }).token;
    },
    async revoke(token) {
      await fetch(`${base}/admin/tokens`, {
        method: "DELETE",
        headers,
        body: JSON.stringify({ token }),
      }).catch(() => undefined);
    },
  };
}
