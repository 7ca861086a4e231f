import assert from "node:assert/strict";
import { test } from "node:test";
import { HttpError } from "../src/http.ts";
import { requireEmail } from "../src/validate.ts";

const rejects = (email: unknown) =>
  assert.throws(
    () => requireEmail({ email }),
    (e: unknown) =>
      e instanceof HttpError &&
      e.status === 400 &&
      e.code === "invalid_field" &&
      e.message === "email must be a valid email address like name@example.com",
    `expected ${JSON.stringify(email)} to be rejected`,
  );

test("accepts ordinary addresses and lower-cases them", () => {
  assert.equal(requireEmail({ email: "Ada@Example.com" }), "ada@example.com");
  assert.equal(
    requireEmail({ email: "  grace.hopper+navy@mail.example.org " }),
    "grace.hopper+navy@mail.example.org",
  );
  assert.equal(requireEmail({ email: "o'brien@b-c.io" }), "o'brien@b-c.io");
  assert.equal(requireEmail({ contact: "a@b.io" }, "contact"), "a@b.io");
});

test("rejects malformed addresses with one message that shows the expected form", () => {
  for (const email of [
    "nope",
    "@example.com",
    "ada@",
    "ada@example",
    "ada@@example.com",
    "ada@example.c",
    "ada@example.123",
    "ada@-example.com",
    "ada@example-.com",
    "ada@exa_mple.com",
    "ada@example..com",
    ".ada@example.com",
    "ada.@example.com",
    "a..da@example.com",
    "a da@example.com",
  ]) {
    rejects(email);
  }
});

test("limits the local part to 64 characters and the address to 254 (SPEC.md)", () => {
  const domain = `${"d".repeat(63)}.${"e".repeat(63)}.${"f".repeat(61)}`;
  const longest = `${"a".repeat(64)}@${domain}`;
  assert.equal(longest.length, 254);
  assert.equal(requireEmail({ email: longest }), longest);
  rejects(`${"a".repeat(65)}@example.com`);
  assert.throws(() => requireEmail({ email: `a${longest}` }), /email must be 1 to 254 characters long/);
});

test("a missing or non-string email names the field", () => {
  assert.throws(() => requireEmail({}), /email must be a string/);
  assert.throws(() => requireEmail({ email: 42 }), /email must be a string/);
});
