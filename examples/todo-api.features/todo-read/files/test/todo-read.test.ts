import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { call, signedInUser } from "../src/testing.ts";

test("GET /todos/:id returns the caller's todo", async () => {
  const app = createApp();
  const { user, token } = await signedInUser(app);
  const todo = app.context.todos.add(user.id, "read me");
  const res = await call(app, "GET", `/todos/${todo.id}`, { token });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { todo });
});

test("someone else's todo and a missing one are both 404; no token is 401", async () => {
  const app = createApp();
  const ada = await signedInUser(app, "ada@example.com");
  const bob = await signedInUser(app, "bob@example.com");
  const todo = app.context.todos.add(bob.user.id, "private");
  const other = await call(app, "GET", `/todos/${todo.id}`, { token: ada.token });
  const missing = await call(app, "GET", "/todos/no-such-id", { token: ada.token });
  assert.deepEqual([other.status, missing.status], [404, 404]);
  assert.deepEqual(other.body, missing.body);
  assert.equal((await call(app, "GET", `/todos/${todo.id}`)).status, 401);
});
