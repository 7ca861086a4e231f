import assert from "node:assert/strict";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { json } from "../src/http.ts";
import { SECURITY_HEADERS, withSecurityHeaders } from "../src/middleware/security-headers.ts";
import { call } from "../src/testing.ts";

test("every response carries the security headers, error responses too", async () => {
  const res = await call(createApp(), "GET", "/does-not-exist");
  assert.equal(res.status, 404);
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers[name], value);
  assert.equal(res.headers["cache-control"], "no-store");
});

test("a route's own cache-control is kept", () => {
  const res = withSecurityHeaders({ ...json(200, {}), headers: { "cache-control": "max-age=60" } });
  assert.equal(res.headers["cache-control"], "max-age=60");
  assert.equal(res.headers["x-content-type-options"], "nosniff");
});
