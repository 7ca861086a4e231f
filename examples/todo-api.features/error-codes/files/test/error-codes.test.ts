import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { apiError, ERROR_CODES, ERROR_STATUS, isErrorCode } from "../src/errors.ts";
import { HttpError } from "../src/http.ts";

/** Every `<status> \`code\`` pair of SPEC.md; `400 \`a\` / \`b\`` gives both codes status 400. */
async function specErrors(): Promise<Map<string, number>> {
  const spec = await readFile(new URL("../SPEC.md", import.meta.url), "utf8");
  const found = new Map<string, number>();
  for (const m of spec.matchAll(/(\d{3})\s+`([a-z_]+)`((?:\s*\/\s*`[a-z_]+`)*)/g)) {
    const status = Number(m[1]);
    for (const code of [m[2]!, ...[...(m[3] ?? "").matchAll(/`([a-z_]+)`/g)].map((x) => x[1]!)]) {
      assert.equal(found.get(code) ?? status, status, `SPEC.md gives ${code} two statuses`);
      found.set(code, status);
    }
  }
  return found;
}

test("the catalogue holds exactly the error codes of SPEC.md, with their statuses", async () => {
  const spec = await specErrors();
  assert.ok(spec.size >= 10, `only ${spec.size} codes found in SPEC.md`);
  assert.deepEqual(
    Object.fromEntries([...spec].sort()),
    Object.fromEntries(Object.entries(ERROR_STATUS).sort()),
  );
  assert.deepEqual(ERROR_CODES, Object.keys(ERROR_STATUS));
});

test("apiError builds an HttpError with the catalogued status", () => {
  const err = apiError("email_taken", "this email is already registered");
  assert.ok(err instanceof HttpError);
  assert.deepEqual(
    [err.status, err.code, err.message],
    [409, "email_taken", "this email is already registered"],
  );
  assert.equal(apiError("invalid_field", "title must be a string").status, 400);
});

test("isErrorCode knows the codes and nothing else", () => {
  assert.equal(isErrorCode("not_found"), true);
  assert.equal(isErrorCode("teapot"), false);
  assert.equal(isErrorCode("toString"), false);
});
