import type { BudgetRefusal, Grant } from "./ledger.ts";

/**
 * An OpenAI-shaped error answer as a value: HTTP `status`, the `error.code` and `error.message` of the body, the
 * `error.type` when it is not the one the status implies, and extra response headers. The HTTP layer sends it
 * (`sendAnswer`); deciding it stays free of I/O.
 */
export interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
  type?: string;
  headers?: Record<string, string>;
}

/**
 * The answer to a request refused by a token budget (429). A budget that is used up (`reservedTokens` 0) is final:
 * `budget_exceeded` with `x-should-retry: false`, so the openai SDK (and Pi) stop at once. A budget held by the
 * scope's requests in flight is `budget_reserved` with `Retry-After: 1` (the SDK retries). Both have type
 * `budget_exceeded`.
 */
export function budgetAnswer(grant: Grant, refusal: BudgetRefusal): ErrorAnswer {
  const who = refusal.scope === "task" ? `task ${grant.taskId} of run ${grant.runId}` : `run ${grant.runId}`;
  if (refusal.reservedTokens === 0) {
    return {
      status: 429,
      code: "budget_exceeded",
      message: `token budget exceeded for ${who}: used ${refusal.usedTokens} of ${refusal.budgetTokens} tokens`,
      type: "budget_exceeded",
      headers: { "x-should-retry": "false" },
    };
  }
  return {
    status: 429,
    code: "budget_reserved",
    message: `token budget of ${who} is held by its requests in flight: used ${refusal.usedTokens} + about ${refusal.reservedTokens} in flight of ${refusal.budgetTokens} tokens; retry when they finish`,
    type: "budget_exceeded",
    headers: { "retry-after": "1" },
  };
}

/**
 * The 401 answer to a `/v1/*` request without a usable token: `token` is the bearer token sent (undefined: none),
 * `expired` whether it named an expired grant.
 */
export function unauthorizedAnswer(token: string | undefined, expired: boolean): ErrorAnswer {
  return {
    status: 401,
    code: "invalid_api_key",
    message:
      token === undefined
        ? "missing bearer token: send Authorization: Bearer <token issued by POST /admin/tokens>"
        : expired
          ? "expired gateway token"
          : "unknown or revoked gateway token",
  };
}

/** The 503 answer when no upstream can take the request (none eligible, or every one refused it). */
export const NO_UPSTREAM_ANSWER: ErrorAnswer = {
  status: 503,
  code: "no_upstream_available",
  message: "no healthy upstream is available",
  headers: { "retry-after": "1" },
};

/**
 * The answer after every attempt failed without an upstream answer to relay. `attempts` ≥ 1; `lastReason` is why
 * the last one failed (`timeout`: no first byte in time, `connect`, `dropped`, `empty_stream`, or a retryable
 * status), undefined when unknown. 504 `upstream_timeout` when the last one timed out, else 502
 * `upstream_unavailable`.
 */
export function exhaustedAnswer(attempts: number, lastReason: string | undefined): ErrorAnswer {
  if (lastReason === "timeout") {
    return {
      status: 504,
      code: "upstream_timeout",
      message: `no upstream answered in time after ${attempts} attempt(s)`,
    };
  }
  return {
    status: 502,
    code: "upstream_unavailable",
    message: `every upstream attempt failed (${attempts} attempt(s), last: ${lastReason ?? "unknown"})`,
  };
}

/** The 429 answer of a request the admission queue refused (`queue_full` at once, `queue_timeout` after waiting). */
export function admissionAnswer(reason: "queue_full" | "queue_timeout"): ErrorAnswer {
  return {
    status: 429,
    code: reason,
    message:
      reason === "queue_full"
        ? "gateway queue is full, retry later"
        : "timed out waiting in the gateway queue",
    headers: { "retry-after": "1" },
  };
}
