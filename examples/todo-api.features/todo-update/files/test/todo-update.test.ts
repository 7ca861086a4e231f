import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { call, signedInUser } from "../src/testing.ts";

test("PATCH /todos/:id renames and completes a todo", async () => {
  let now = new Date("2030-01-01T00:00:00.000Z");
  const app = createApp({ now: () => now });
  const { user, token } = await signedInUser(app);
  const todo = app.context.todos.add(user.id, "draft");
  now = new Date("2030-01-01T00:05:00.000Z");
  const res = await call(app, "PATCH", `/todos/${todo.id}`, { token, body: { title: "final", done: true } });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {
    todo: { ...todo, title: "final", done: true, updatedAt: "2030-01-01T00:05:00.000Z" },
  });
});

test("bad patches are 400, foreign todos 404, no token 401", async () => {
  const app = createApp();
  const ada = await signedInUser(app, "ada@example.com");
  const bob = await signedInUser(app, "bob@example.com");
  const mine = app.context.todos.add(ada.user.id, "mine");
  const theirs = app.context.todos.add(bob.user.id, "theirs");
  const patch = (id: string, body: unknown, token?: string) =>
    call(app, "PATCH", `/todos/${id}`, { token, body });
  assert.equal((await patch(mine.id, {}, ada.token)).status, 400);
  assert.equal((await patch(mine.id, { done: "yes" }, ada.token)).status, 400);
  assert.equal((await patch(mine.id, { title: "" }, ada.token)).status, 400);
  assert.equal((await patch(theirs.id, { done: true }, ada.token)).status, 404);
  assert.equal(app.context.todos.get(bob.user.id, theirs.id)?.done, false);
  assert.equal((await patch(mine.id, { done: true })).status, 401);
});
