import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { call } from "../src/testing.ts";

test("GET /health answers ok with the server time", async () => {
  const app = createApp({ now: () => new Date("2030-01-02T03:04:05.000Z") });
  const res = await call(app, "GET", "/health");
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { status: "ok", time: "2030-01-02T03:04:05.000Z" });
});

test("/health only answers GET", async () => {
  const res = await call(createApp(), "POST", "/health");
  assert.equal(res.status, 405);
  assert.equal(res.headers.allow, "GET");
});
