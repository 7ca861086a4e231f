import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { verifyPassword, verifyToken } from "../src/auth.ts";
import { call } from "../src/testing.ts";

interface SignupBody {
  user: { id: string; email: string; createdAt: string };
  token: string;
}

test("signup creates the user and returns a token for it", async () => {
  const app = createApp();
  const res = await call(app, "POST", "/auth/signup", {
    body: { email: "Grace@Example.com", password: "hopper-1906" },
  });
  assert.equal(res.status, 201);
  const body = res.body as SignupBody;
  assert.equal(body.user.email, "grace@example.com");
  assert.equal("passwordHash" in body.user, false);
  assert.equal(verifyToken(app.context, body.token), body.user.id);
  const stored = app.context.users.byEmail("grace@example.com");
  assert.ok(stored && (await verifyPassword("hopper-1906", stored.passwordHash)));
});

test("a registered email is 409 email_taken, whatever its case", async () => {
  const app = createApp();
  await call(app, "POST", "/auth/signup", { body: { email: "a@b.io", password: "12345678" } });
  const res = await call(app, "POST", "/auth/signup", { body: { email: "A@B.IO", password: "abcdefgh" } });
  assert.equal(res.status, 409);
  assert.equal((res.body as { error: { code: string } }).error.code, "email_taken");
});

test("invalid input is 400 and names the field", async () => {
  const app = createApp();
  for (const [body, field] of [
    [{ email: "not-an-email", password: "12345678" }, "email"],
    [{ email: "a@b.io", password: "short" }, "password"],
    [{ email: "a@b.io" }, "password"],
  ] as const) {
    const res = await call(app, "POST", "/auth/signup", { body });
    assert.equal(res.status, 400);
    assert.match((res.body as { error: { message: string } }).error.message, new RegExp(`^${field} `));
  }
  const notObject = await call(app, "POST", "/auth/signup", { body: [1, 2] });
  assert.equal((notObject.body as { error: { code: string } }).error.code, "invalid_body");
});
