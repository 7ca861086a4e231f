import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { call, signedInUser } from "../src/testing.ts";

const titles = (body: unknown) => (body as { todos: { title: string }[] }).todos.map((t) => t.title);

test("GET /todos lists only the caller's todos, oldest first", async () => {
  const app = createApp();
  const ada = await signedInUser(app, "ada@example.com");
  const bob = await signedInUser(app, "bob@example.com");
  app.context.todos.add(ada.user.id, "first");
  app.context.todos.add(bob.user.id, "not yours");
  app.context.todos.add(ada.user.id, "second");
  const res = await call(app, "GET", "/todos", { token: ada.token });
  assert.equal(res.status, 200);
  assert.deepEqual(titles(res.body), ["first", "second"]);
});

test("?done filters, other values are 400, no token is 401", async () => {
  const app = createApp();
  const { user, token } = await signedInUser(app);
  const open = app.context.todos.add(user.id, "open");
  const closed = app.context.todos.add(user.id, "closed");
  app.context.todos.update(user.id, closed.id, { done: true });
  assert.deepEqual(titles((await call(app, "GET", "/todos?done=true", { token })).body), ["closed"]);
  assert.deepEqual(titles((await call(app, "GET", "/todos?done=false", { token })).body), [open.title]);
  assert.equal((await call(app, "GET", "/todos?done=maybe", { token })).status, 400);
  assert.equal((await call(app, "GET", "/todos")).status, 401);
});
