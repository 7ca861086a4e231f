/**
 * The HTTP core: request and response shapes, features and their routes, errors and the request handler.
 * Handlers are plain functions of a parsed request, so tests call the app in-process (src/testing.ts) and
 * src/server.ts adapts node:http to it.
 */
import type { AppContext } from "./context.ts";

/** The methods routes can use. */
export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/**
 * A request as it arrives, before routing: the raw URL (path and query) and the raw body text.
 * `bodyTooLarge` is set by the server when it stopped reading a body over its size limit.
 */
export interface RawRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string;
  bodyTooLarge?: boolean;
}

/**
 * A routed request. `headers` have lower-case names; `body` is the parsed JSON body (undefined when the body
 * was empty); `params` holds the `:name` segments of the matched route path.
 */
export interface AppRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  body: unknown;
  params: Record<string, string>;
}

/** A response. `body` is sent as JSON; undefined means no body (e.g. 204). */
export interface AppResponse {
  status: number;
  headers: Record<string, string>;
  body?: unknown;
}

/** A route handler. Throw {@link HttpError} for client errors; anything else becomes a 500. */
export type Handler = (req: AppRequest, ctx: AppContext) => AppResponse | Promise<AppResponse>;

/** One route: a method and a path pattern such as `/todos/:id`. */
export interface Route {
  method: Method;
  path: string;
  handler: Handler;
}

/**
 * What a feature adds to the app: routes, and optionally a hook that sees every response (errors included)
 * and returns the response to send.
 */
export interface Feature {
  name: string;
  routes?: Route[];
  onResponse?: (res: AppResponse, req: RawRequest) => AppResponse;
}

/** A client error with its HTTP status and a stable machine-readable code. */
export class HttpError extends Error {
  status: number;
  code: string;
  constructor(status: number, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
  }
}

/** A JSON response with `status` and `body` (no body when `body` is undefined). */
export function json(status: number, body?: unknown): AppResponse {
  const headers: Record<string, string> =
    body === undefined ? {} : { "content-type": "application/json; charset=utf-8" };
  return { status, headers, body };
}

/** The error body of the API: `{ "error": { "code", "message" } }`. */
export function errorResponse(status: number, code: string, message: string): AppResponse {
  return json(status, { error: { code, message } });
}

/** Matches `path` against a route pattern; the `:name` params on a match, otherwise undefined. */
function matchPath(pattern: string, path: string): Record<string, string> | undefined {
  const want = pattern.split("/").filter(Boolean);
  const got = path.split("/").filter(Boolean);
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i] ?? "";
    const g = got[i] ?? "";
    if (w.startsWith(":")) params[w.slice(1)] = decodeURIComponent(g);
    else if (w !== g) return undefined;
  }
  return params;
}

function parseBody(text: string | undefined): unknown {
  if (text === undefined || text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, "invalid_json", "the request body is not valid JSON", { cause: err });
  }
}

async function route(features: Feature[], ctx: AppContext, raw: RawRequest): Promise<AppResponse> {
  if (raw.bodyTooLarge) return errorResponse(413, "payload_too_large", "the request body is too large");
  const url = new URL(raw.url, "http://localhost");
  const allowed: string[] = [];
  for (const feature of features) {
    for (const r of feature.routes ?? []) {
      const params = matchPath(r.path, url.pathname);
      if (params === undefined) continue;
      if (r.method !== raw.method.toUpperCase()) {
        allowed.push(r.method);
        continue;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(raw.headers ?? {})) headers[k.toLowerCase()] = v;
      const req: AppRequest = {
        method: r.method,
        path: url.pathname,
        query: url.searchParams,
        headers,
        body: parseBody(raw.body),
        params,
      };
      return await r.handler(req, ctx);
    }
  }
  if (allowed.length > 0) {
    const res = errorResponse(405, "method_not_allowed", `${raw.method} is not allowed on ${url.pathname}`);
    return { ...res, headers: { ...res.headers, allow: [...new Set(allowed)].join(", ") } };
  }
  return errorResponse(404, "not_found", `no route for ${raw.method} ${url.pathname}`);
}

/**
 * Builds the request handler of an app from its features. A body the server cut off answers 413
 * `payload_too_large`, unknown paths 404 `not_found`, a known path
 * with another method 405 `method_not_allowed` (with an `allow` header), a body that is not JSON 400
 * `invalid_json`, an {@link HttpError} its own status and code, and any other error 500 `internal_error`
 * (its message is not sent). Every response then passes through the features' `onResponse` hooks, in order.
 */
export function createHandler(
  features: Feature[],
  ctx: AppContext,
): (raw: RawRequest) => Promise<AppResponse> {
  return async (raw) => {
    let res: AppResponse;
    try {
      res = await route(features, ctx, raw);
    } catch (err) {
      res =
        err instanceof HttpError
          ? errorResponse(err.status, err.code, err.message)
          : errorResponse(500, "internal_error", "internal server error");
    }
    for (const feature of features) {
      if (feature.onResponse) res = feature.onResponse(res, raw);
    }
    return res;
  };
}
