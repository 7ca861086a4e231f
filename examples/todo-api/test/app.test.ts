import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { createContext } from "../src/context.ts";
import { createHandler, type Feature, HttpError, json } from "../src/http.ts";
import { createHttpServer, MAX_BODY_BYTES } from "../src/server.ts";
import { call } from "../src/testing.ts";

const probe: Feature = {
  name: "probe",
  routes: [
    { method: "GET", path: "/things/:id", handler: (req) => json(200, { id: req.params.id }) },
    { method: "POST", path: "/things", handler: (req) => json(201, { got: req.body }) },
    {
      method: "GET",
      path: "/teapot",
      handler: () => {
        throw new HttpError(418, "teapot", "short and stout");
      },
    },
    {
      method: "GET",
      path: "/boom",
      handler: () => {
        throw new Error("secret detail");
      },
    },
  ],
};
const handle = createHandler([probe], createContext());

test("routes by method and path and decodes params", async () => {
  const res = await handle({ method: "GET", url: "/things/a%20b?x=1" });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { id: "a b" });
});

test("parses JSON bodies", async () => {
  const res = await handle({ method: "POST", url: "/things", body: '{"n":1}' });
  assert.deepEqual([res.status, res.body], [201, { got: { n: 1 } }]);
});

test("unknown paths are 404 not_found, other methods 405 with allow", async () => {
  const missing = await handle({ method: "GET", url: "/nope" });
  assert.deepEqual(
    [missing.status, missing.body],
    [404, { error: { code: "not_found", message: "no route for GET /nope" } }],
  );
  const wrong = await handle({ method: "DELETE", url: "/things" });
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.allow, "POST");
});

test("malformed JSON is 400 invalid_json; HttpError keeps its status; other errors are an opaque 500", async () => {
  const bad = await handle({ method: "POST", url: "/things", body: "{oops" });
  assert.deepEqual([bad.status, (bad.body as { error: { code: string } }).error.code], [400, "invalid_json"]);
  const teapot = await handle({ method: "GET", url: "/teapot" });
  assert.deepEqual(
    [teapot.status, teapot.body],
    [418, { error: { code: "teapot", message: "short and stout" } }],
  );
  const boom = await handle({ method: "GET", url: "/boom" });
  assert.equal(boom.status, 500);
  assert.doesNotMatch(JSON.stringify(boom.body), /secret detail/);
});

test("the app answers unknown routes with a JSON 404", async () => {
  const res = await call(createApp(), "GET", "/does-not-exist");
  assert.equal(res.status, 404);
  assert.equal(res.headers["content-type"], "application/json; charset=utf-8");
});

test("the HTTP server serves the app over a real socket", async () => {
  const server = createHttpServer(createApp());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/does-not-exist`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "not_found");
    const big = await fetch(`http://127.0.0.1:${port}/does-not-exist`, {
      method: "POST",
      body: "x".repeat(MAX_BODY_BYTES + 1),
    });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as { error: { code: string } }).error.code, "payload_too_large");
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});
