import assert from "node:assert/strict";
import { test } from "node:test";
import { hashPassword, issueToken, verifyPassword, verifyToken } from "../src/auth.ts";
import { createContext } from "../src/context.ts";
import { HttpError } from "../src/http.ts";
import { requireEmail, requireObject, requirePassword, requireString } from "../src/validate.ts";

test("password hashes verify the right password only, and are salted", async () => {
  const hash = await hashPassword("correct horse battery");
  assert.match(hash, /^scrypt\$[0-9a-f]{32}\$[0-9a-f]{64}$/);
  assert.equal(await verifyPassword("correct horse battery", hash), true);
  assert.equal(await verifyPassword("wrong password", hash), false);
  assert.notEqual(await hashPassword("correct horse battery"), hash);
  assert.equal(await verifyPassword("x", "not-a-hash"), false);
});

test("tokens verify until they expire, and only with the right secret", () => {
  let now = new Date("2030-01-01T00:00:00Z");
  const ctx = createContext({ secret: "s".repeat(32), tokenTtlMs: 1000, now: () => now });
  const token = issueToken(ctx, "user-1");
  assert.equal(verifyToken(ctx, token), "user-1");
  assert.equal(verifyToken({ ...ctx, secret: "t".repeat(32) }, token), undefined);
  assert.equal(verifyToken(ctx, `${token}x`), undefined);
  now = new Date(now.getTime() + 1000);
  assert.equal(verifyToken(ctx, token), undefined);
});

test("stores keep emails unique and todos private to their owner", () => {
  const ctx = createContext();
  const ada = ctx.users.add("Ada@Example.com", "h");
  assert.equal(ada?.email, "ada@example.com");
  assert.equal(ctx.users.add("ADA@example.com", "h"), undefined);
  const todo = ctx.todos.add("ada", "write tests");
  assert.equal(ctx.todos.get("bob", todo.id), undefined);
  assert.equal(ctx.todos.remove("bob", todo.id), false);
  assert.equal(ctx.todos.update("ada", todo.id, { done: true })?.done, true);
  assert.deepEqual(
    ctx.todos.list("ada").map((t) => t.title),
    ["write tests"],
  );
});

test("validation rejects bad input with 400 and the field name", () => {
  assert.throws(
    () => requireObject([1]),
    (e: unknown) => e instanceof HttpError && e.code === "invalid_body",
  );
  assert.equal(requireString({ title: "  hi " }, "title"), "hi");
  assert.throws(() => requireString({ title: "" }, "title"), /title must be 1 to 200 characters long/);
  assert.equal(requireEmail({ email: "A@B.io" }), "a@b.io");
  assert.throws(() => requireEmail({ email: "nope" }), /email must be a valid email address/);
  assert.throws(() => requirePassword({ password: "short" }), /password must be 8 to 128/);
});
