import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, loadConfig } from "../src/config.ts";

test("defaults apply when nothing is set", () => {
  assert.deepEqual(loadConfig({}), {
    port: 3000,
    host: "127.0.0.1",
    secret: undefined,
    tokenTtlMs: 3_600_000,
  });
});

test("reads every variable", () => {
  const secret = "k".repeat(40);
  const config = loadConfig({ PORT: "8080", HOST: "0.0.0.0", AUTH_SECRET: secret, TOKEN_TTL_SECONDS: "60" });
  assert.deepEqual(config, { port: 8080, host: "0.0.0.0", secret, tokenTtlMs: 60_000 });
});

test("rejects bad values and names each of them", () => {
  assert.throws(
    () => loadConfig({ PORT: "http", AUTH_SECRET: "short", TOKEN_TTL_SECONDS: "0" }),
    (err: unknown) =>
      err instanceof ConfigError &&
      /PORT must be an integer/.test(err.message) &&
      /AUTH_SECRET must be at least 32/.test(err.message) &&
      /TOKEN_TTL_SECONDS must be an integer/.test(err.message),
  );
});

test("production requires AUTH_SECRET", () => {
  assert.throws(() => loadConfig({ NODE_ENV: "production" }), /AUTH_SECRET is required/);
  assert.equal(loadConfig({ NODE_ENV: "production", AUTH_SECRET: "s".repeat(32) }).secret, "s".repeat(32));
});
