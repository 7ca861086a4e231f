import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { call, signedInUser } from "../src/testing.ts";

test("POST /todos creates an open todo owned by the caller", async () => {
  const app = createApp({ now: () => new Date("2030-05-06T07:08:09.000Z") });
  const { user, token } = await signedInUser(app);
  const res = await call(app, "POST", "/todos", { token, body: { title: "  buy milk  " } });
  assert.equal(res.status, 201);
  const { todo } = res.body as { todo: { id: string; title: string; done: boolean; ownerId: string } };
  assert.deepEqual(
    { title: todo.title, done: todo.done, ownerId: todo.ownerId },
    { title: "buy milk", done: false, ownerId: user.id },
  );
  assert.deepEqual(app.context.todos.get(user.id, todo.id), {
    ...todo,
    createdAt: "2030-05-06T07:08:09.000Z",
    updatedAt: "2030-05-06T07:08:09.000Z",
  });
});

test("a blank or missing title is 400, no token is 401", async () => {
  const app = createApp();
  const { token } = await signedInUser(app);
  assert.equal((await call(app, "POST", "/todos", { token, body: { title: "   " } })).status, 400);
  assert.equal((await call(app, "POST", "/todos", { token, body: {} })).status, 400);
  assert.equal((await call(app, "POST", "/todos", { token, body: { title: "x".repeat(201) } })).status, 400);
  assert.equal((await call(app, "POST", "/todos", { body: { title: "buy milk" } })).status, 401);
});
