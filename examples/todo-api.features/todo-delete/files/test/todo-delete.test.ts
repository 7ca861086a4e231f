import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { call, signedInUser } from "../src/testing.ts";

test("DELETE /todos/:id removes the todo and answers 204 without a body", async () => {
  const app = createApp();
  const { user, token } = await signedInUser(app);
  const todo = app.context.todos.add(user.id, "temporary");
  const res = await call(app, "DELETE", `/todos/${todo.id}`, { token });
  assert.deepEqual([res.status, res.body], [204, undefined]);
  assert.deepEqual(app.context.todos.list(user.id), []);
  assert.equal((await call(app, "DELETE", `/todos/${todo.id}`, { token })).status, 404);
});

test("someone else's todo is 404 and survives; no token is 401", async () => {
  const app = createApp();
  const ada = await signedInUser(app, "ada@example.com");
  const bob = await signedInUser(app, "bob@example.com");
  const theirs = app.context.todos.add(bob.user.id, "theirs");
  assert.equal((await call(app, "DELETE", `/todos/${theirs.id}`, { token: ada.token })).status, 404);
  assert.equal(app.context.todos.list(bob.user.id).length, 1);
  assert.equal((await call(app, "DELETE", `/todos/${theirs.id}`)).status, 401);
});
