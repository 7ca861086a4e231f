import type { IncomingMessage, ServerResponse } from "node:http";
import type { GatewayContext } from "../context.ts";
import { unauthorizedAnswer } from "../domain/answers.ts";
import type { Grant } from "../domain/ledger.ts";
import { bearerToken, sendAnswer } from "../http-util.ts";

/** The grant of callers without a known token under `auth: "open"`. */
const ANONYMOUS: Grant = { runId: "anonymous", role: "anonymous" };

/**
 * The grant of a `/v1/*` request's bearer token. Under `auth: "open"` a caller without a known token gets the
 * anonymous grant (run `anonymous`). Otherwise a missing, unknown, revoked or expired token is answered 401
 * `invalid_api_key` here (and counted as rejected `unauthorized`).
 * @returns the grant, or undefined when the request was answered. Never rejects.
 */
export async function authenticate(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<Grant | undefined> {
  const token = bearerToken(req.headers);
  const found = token === undefined ? undefined : await ctx.accounts.grantOf(token);
  if (found !== undefined && found !== "expired") return found;
  if (ctx.settings.auth === "open") return ANONYMOUS;
  ctx.metrics.rejected.inc({ reason: "unauthorized" });
  sendAnswer(res, unauthorizedAnswer(token, found === "expired"));
  return undefined;
}
