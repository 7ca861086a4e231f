import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { verifyToken } from "../src/auth.ts";
import { call, signedInUser } from "../src/testing.ts";

test("login with the right password returns the user and a token", async () => {
  const app = createApp();
  const { user } = await signedInUser(app, "ada@example.com", "analytical-engine");
  const res = await call(app, "POST", "/auth/login", {
    body: { email: "ADA@example.com", password: "analytical-engine" },
  });
  assert.equal(res.status, 200);
  const body = res.body as { user: { id: string }; token: string };
  assert.equal(body.user.id, user.id);
  assert.equal(verifyToken(app.context, body.token), user.id);
});

test("a wrong password and an unknown email get the same 401", async () => {
  const app = createApp();
  await signedInUser(app, "ada@example.com", "analytical-engine");
  const wrong = await call(app, "POST", "/auth/login", {
    body: { email: "ada@example.com", password: "nope-nope" },
  });
  const unknown = await call(app, "POST", "/auth/login", {
    body: { email: "bob@example.com", password: "nope-nope" },
  });
  assert.equal(wrong.status, 401);
  assert.deepEqual(wrong.body, unknown.body);
  assert.equal((wrong.body as { error: { code: string } }).error.code, "invalid_credentials");
});

test("missing fields are 400", async () => {
  const res = await call(createApp(), "POST", "/auth/login", { body: { email: "ada@example.com" } });
  assert.equal(res.status, 400);
});
