/**
 * Helpers for tests: call the app in-process (no sockets) and create a signed-in user directly in the
 * store (so tests do not depend on the signup route).
 */
import type { App } from "./app.ts";
import { hashPassword, issueToken } from "./auth.ts";
import type { User } from "./store.ts";

/** A response as tests see it: status, lower-case headers and the body as a JSON value. */
export interface TestResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/**
 * Sends one request to the app. `body` is JSON-encoded unless it is a string (sent as is, e.g. to test
 * malformed JSON); `token` becomes an `Authorization: Bearer` header.
 */
export async function call(
  app: App,
  method: string,
  url: string,
  options: { body?: unknown; token?: string; headers?: Record<string, string> } = {},
): Promise<TestResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    headers["content-type"] = "application/json";
  }
  const res = await app.handle({ method, url, headers, body });
  // Round-trip through JSON, as a real client would see the body.
  const parsed: unknown = res.body === undefined ? undefined : JSON.parse(JSON.stringify(res.body));
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Creates a user with `email` and `password` directly in the store; returns it with a valid token. */
export async function signedInUser(
  app: App,
  email = "ada@example.com",
  password = "correct horse battery",
): Promise<{ user: User; token: string }> {
  const user = app.context.users.add(email, await hashPassword(password));
  if (!user) throw new Error(`signedInUser: ${email} already exists`);
  return { user, token: issueToken(app.context, user.id) };
}
