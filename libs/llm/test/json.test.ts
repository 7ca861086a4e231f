import { describe, expect, it } from "vitest";
import { extractJson } from "../src/json.ts";

describe("extractJson", () => {
  it("given a fenced block among prose, when extracted, then the last fence wins", () => {
    const r = extractJson('thinking...\n```json\n{"a":1}\n```\nand\n```json\n{"b":2}\n```');
    expect(r).toEqual({ ok: true, value: { b: 2 } });
  });
  it("given prose around an object with braces inside strings, then the balanced object is parsed", () => {
    expect(extractJson('Here: {"s":"x}y{","n":[1,2]} done')).toEqual({
      ok: true,
      value: { s: "x}y{", n: [1, 2] },
    });
  });
  it("given a bare array of objects, then the array is returned, not its first object", () => {
    expect(extractJson('[{"a":1},{"b":2}]')).toEqual({ ok: true, value: [{ a: 1 }, { b: 2 }] });
    expect(extractJson('Fix tasks: [{"a":1}] as requested')).toEqual({ ok: true, value: [{ a: 1 }] });
  });
  it("given a bare array, then it is parsed", () => {
    expect(extractJson("[1,2,3]")).toEqual({ ok: true, value: [1, 2, 3] });
  });
  it("given truncated JSON, then it reports an error instead of throwing", () => {
    const r = extractJson('{"tasks": [{"id": "a"');
    expect(r.ok).toBe(false);
  });
});
