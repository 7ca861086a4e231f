import { APIConnectionError, APIError } from "openai";
import { describe, expect, it } from "vitest";
import { ModelOutputError, refusalStatus } from "../src/index.ts";

describe("refusalStatus", () => {
  it("names 401, 403 and 404 answers of the openai SDK, and nothing retrying could fix otherwise", () => {
    const answer = (status: number) =>
      APIError.generate(
        status,
        { error: { message: `status ${status}` } },
        `status ${status}`,
        new Headers(),
      );
    expect(refusalStatus(answer(401))).toBe(401);
    expect(refusalStatus(answer(403))).toBe(403);
    expect(refusalStatus(answer(404))).toBe(404);
    for (const status of [400, 408, 429, 500, 503]) expect(refusalStatus(answer(status))).toBeUndefined();
    expect(refusalStatus(new APIConnectionError({ message: "connection refused" }))).toBeUndefined();
    expect(refusalStatus(new ModelOutputError("bad JSON"))).toBeUndefined();
    expect(refusalStatus(undefined)).toBeUndefined();
  });
});
