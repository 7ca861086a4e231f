import assert from "node:assert/strict";
import { test } from "node:test";
import { apiError, ERROR_STATUS, ErrorCode } from "../src/errors.ts";

test("every error code has its SPEC.md status", () => {
  assert.equal(ERROR_STATUS[ErrorCode.NotFound], 404);
  assert.equal(ERROR_STATUS[ErrorCode.EmailTaken], 409);
  assert.equal(Object.keys(ERROR_STATUS).length, 10);
});

test("apiError uses the catalogued status", () => {
  const err = apiError(ErrorCode.InvalidCredentials, "wrong email or password");
  assert.deepEqual([err.status, err.code], [401, "invalid_credentials"]);
});
