import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import type { GatewayContext } from "../context.ts";
import type { Grant } from "../domain/ledger.ts";
import { bearerToken, readBody, safeEqual, sendError, sendJson } from "../http-util.ts";
import type { UpstreamAdmin } from "../upstream-registry.ts";
import { UpstreamError } from "../upstreams.ts";

/** Body of `POST /admin/upstreams`. */
const AddUpstreamBody = z.object({
  name: z
    .string()
    .min(1)
    .regex(/^[A-Za-z0-9._:-]+$/, "letters, digits and . _ : - only"),
  endpoint: z.url(),
  apiKey: z.string().min(1).optional(),
  weight: z.number().positive().optional(),
  models: z.array(z.string().min(1)).min(1).optional(),
});

/** Body of `POST /admin/tokens`. */
const IssueTokenBody = z.object({
  runId: z.string().min(1),
  taskId: z.string().min(1).optional(),
  role: z.string().min(1).optional(),
  budgetTokens: z.int().positive().optional(),
  anyRun: z.boolean().optional(),
  /** Lifetime of the token (ms); it is refused after that. */
  ttlMs: z.int().positive().optional(),
});

/** Largest admin request body (bytes). */
const MAX_ADMIN_BODY_BYTES = 1024 * 1024;

function issuesText(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ");
}

/** The JSON body of an admin request ({} when empty or too large). @throws SyntaxError for invalid JSON. */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const raw = await readBody(req, MAX_ADMIN_BODY_BYTES);
  if (raw === undefined || raw.length === 0) return {};
  return JSON.parse(raw.toString("utf8"));
}

/** Whether the request's query has `wait=true` (answer once the drain or removal finished). */
function waitRequested(req: IncomingMessage): boolean {
  return new URL(req.url ?? "/", "http://x").searchParams.get("wait") === "true";
}

/**
 * `/admin/*` (README "HTTP API"): upstreams (list, add, show, remove, drain, resume), tokens (issue, revoke) and
 * usage. Needs `Authorization: Bearer <admin token>`: 403 `admin_disabled` without an admin token configured, 401
 * `invalid_admin_token` for another one. `UpstreamError`s become 404 / 409 / 400; a store that cannot be written
 * gives 503 `store_unavailable` (nothing changed). Rejects only on an internal error.
 */
export async function handleAdmin(
  ctx: GatewayContext,
  upstreamAdmin: UpstreamAdmin,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  method: string,
): Promise<void> {
  const { adminToken } = ctx.settings;
  const token = bearerToken(req.headers);
  if (adminToken === undefined) {
    sendError(res, 403, "admin_disabled", "the admin API is disabled: set GATEWAY_ADMIN_TOKEN");
    return;
  }
  if (token === undefined || !safeEqual(token, adminToken)) {
    sendError(
      res,
      401,
      "invalid_admin_token",
      "admin endpoints need Authorization: Bearer <GATEWAY_ADMIN_TOKEN>",
    );
    return;
  }
  let body: unknown;
  try {
    body = method === "POST" || method === "DELETE" ? await readJson(req) : undefined;
  } catch (err) {
    sendError(res, 400, "invalid_json", `request body is not valid JSON: ${(err as Error).message}`);
    return;
  }
  try {
    if (path.startsWith("/admin/upstreams")) {
      if (await upstreamRoutes(ctx, upstreamAdmin, { req, res, path, method, body })) return;
    } else if (path === "/admin/tokens") {
      if (method === "POST") return await issueToken(ctx, res, body);
      if (method === "DELETE") return await revokeToken(ctx, res, body);
    } else if (path === "/admin/usage" && method === "GET") {
      const runId = new URL(req.url ?? "/", "http://x").searchParams.get("runId") ?? undefined;
      return sendJson(res, 200, { runs: await ctx.accounts.usage(runId) });
    }
    sendError(res, 404, "not_found", `unknown admin route ${method} ${path}`);
  } catch (err) {
    if (err instanceof UpstreamError) {
      sendError(
        res,
        err.code === "unknown_upstream" ? 404 : err.code === "duplicate_upstream" ? 409 : 400,
        err.code,
        err.message,
      );
      return;
    }
    throw err;
  }
}

/** An authorized admin request: its path (no query), method and JSON body (undefined for GET). */
interface AdminCall {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  method: string;
  body: unknown;
}

/**
 * `/admin/upstreams[/{name}[/drain|/resume]]`. @returns whether the route matched (and was answered).
 * @throws UpstreamError for an unknown, duplicate or invalid upstream.
 */
async function upstreamRoutes(
  ctx: GatewayContext,
  upstreamAdmin: UpstreamAdmin,
  call: AdminCall,
): Promise<boolean> {
  const { req, res, path, method, body } = call;
  if (path === "/admin/upstreams") {
    if (method === "GET") {
      sendJson(res, 200, { upstreams: upstreamAdmin.list() });
      return true;
    }
    if (method === "POST") {
      const p = AddUpstreamBody.safeParse(body);
      if (!p.success) sendError(res, 400, "invalid_upstream", issuesText(p.error));
      else sendJson(res, 201, upstreamAdmin.add(p.data));
      return true;
    }
  }
  const m = /^\/admin\/upstreams\/([^/]+)(\/drain|\/resume)?$/.exec(path);
  if (!m) return false;
  const name = decodeURIComponent(m[1]!);
  const action = m[2];
  const info = () => ctx.upstreams.get(name).info(Date.now());
  if (action === undefined && method === "GET") {
    sendJson(res, 200, info());
    return true;
  }
  if (action === undefined && method === "DELETE") {
    const inflight = ctx.upstreams.get(name).inflight;
    const done = upstreamAdmin.remove(name);
    if (waitRequested(req)) await done;
    sendJson(res, 200, { name, removed: true, inflightAtRemoval: inflight });
    return true;
  }
  if (action === "/drain" && method === "POST") {
    ctx.upstreams.get(name); // an unknown name throws here (404), not in the drain's promise nobody may await
    const done = upstreamAdmin.drain(name);
    if (waitRequested(req)) await done;
    sendJson(res, 200, info());
    return true;
  }
  if (action === "/resume" && method === "POST") {
    upstreamAdmin.resume(name);
    sendJson(res, 200, info());
    return true;
  }
  return false;
}

/** `POST /admin/tokens` `{runId, taskId?, role?, budgetTokens?, anyRun?, ttlMs?}` → 201 `{token, …grant}`. */
async function issueToken(ctx: GatewayContext, res: ServerResponse, body: unknown): Promise<void> {
  const p = IssueTokenBody.safeParse(body);
  if (!p.success) return sendError(res, 400, "invalid_request", issuesText(p.error));
  const { ttlMs, ...rest } = p.data;
  const grant: Grant = ttlMs === undefined ? rest : { ...rest, expiresAt: Date.now() + ttlMs };
  let token: string;
  try {
    token = await ctx.accounts.issue(grant);
  } catch (err) {
    ctx.log.error({ err: (err as Error).message }, "token store write failed; token not issued");
    return sendError(res, 503, "store_unavailable", "could not store the token; retry");
  }
  ctx.log.info(
    {
      runId: grant.runId,
      taskId: grant.taskId,
      budgetTokens: grant.budgetTokens,
      expiresAt: grant.expiresAt,
    },
    "token issued",
  );
  sendJson(res, 201, { token, ...grant });
}

/** `DELETE /admin/tokens` `{token}` → 200 `{revoked: true}`, 404 `unknown_token`. */
async function revokeToken(ctx: GatewayContext, res: ServerResponse, body: unknown): Promise<void> {
  const t = (body as { token?: unknown } | undefined)?.token;
  if (typeof t !== "string") return sendError(res, 400, "invalid_request", "body must be {token}");
  let known: boolean;
  try {
    known = await ctx.accounts.revoke(t);
  } catch (err) {
    ctx.log.error({ err: (err as Error).message }, "token store delete failed");
    return sendError(res, 503, "store_unavailable", "could not revoke the token in the store; retry");
  }
  if (known) sendJson(res, 200, { revoked: true });
  else sendError(res, 404, "unknown_token", "unknown token");
}
