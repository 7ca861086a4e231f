import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { call, signedInUser } from "../src/testing.ts";

test("GET /auth/me returns the token's user without its password hash", async () => {
  const app = createApp();
  const { user, token } = await signedInUser(app);
  const res = await call(app, "GET", "/auth/me", { token });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { user: { id: user.id, email: user.email, createdAt: user.createdAt } });
});

test("a missing, forged or expired token is 401", async () => {
  let now = new Date("2030-01-01T00:00:00Z");
  const app = createApp({ tokenTtlMs: 60_000, now: () => now });
  const { token } = await signedInUser(app);
  assert.equal((await call(app, "GET", "/auth/me")).status, 401);
  const forged = token.replace(/.$/, (c) => (c === "A" ? "B" : "A"));
  assert.equal((await call(app, "GET", "/auth/me", { token: forged })).status, 401);
  now = new Date(now.getTime() + 60_000);
  const expired = await call(app, "GET", "/auth/me", { token });
  assert.equal(expired.status, 401);
  assert.equal((expired.body as { error: { code: string } }).error.code, "unauthorized");
});
