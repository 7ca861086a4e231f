import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadScript, parseScript, ScriptLoadError, ScriptValidationError } from "../src/index.ts";

function issuesOf(value: unknown): { path: string; message: string }[] {
  try {
    parseScript(value);
  } catch (err) {
    expect(err).toBeInstanceOf(ScriptValidationError);
    return (err as ScriptValidationError).issues;
  }
  throw new Error("expected a validation error");
}

describe("parseScript", () => {
  it("applies defaults", () => {
    const s = parseScript({
      conversations: [{ name: "a", turns: [{ toolCalls: [{ name: "ls" }] }] }],
    });
    expect(s.model).toBe("sim-1");
    expect(s.conversations[0]!.after).toBe("repeat");
    expect(s.conversations[0]!.turns[0]!.toolCalls![0]!.arguments).toEqual({});
  });

  it("lists every problem with its path", () => {
    const issues = issuesOf({
      model: "",
      latency: { tokensPerSecond: 0 },
      conversations: [
        { name: "ok", turns: [{ content: "x" }] },
        {
          name: "bad",
          match: { user: "/(unclosed/", assistant: "x" },
          after: "loop",
          turns: [
            {},
            { content: "x", error: { status: 500, message: "boom" } },
            { toolCalls: [{ arguments: { a: 1 } }], delayMs: -1 },
            { error: { status: 200, message: "not an error" } },
            { content: "y", tool_calls: [] },
          ],
        },
        { name: "ok", turns: [] },
      ],
    });
    const paths = issues.map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        "model",
        "latency.tokensPerSecond",
        "conversations[1].match.user",
        "conversations[1].match",
        "conversations[1].after",
        "conversations[1].turns[0]",
        "conversations[1].turns[1]",
        "conversations[1].turns[2].toolCalls[0].name",
        "conversations[1].turns[2].delayMs",
        "conversations[1].turns[3].error.status",
        "conversations[1].turns[4]",
        "conversations[2].turns",
      ]),
    );
    expect(issues.find((i) => i.path === "conversations[1].match.user")!.message).toMatch(/invalid regex/);
    expect(issues.find((i) => i.path === "conversations[1].turns[0]")!.message).toMatch(
      /content, toolCalls or error/,
    );
    expect(issues.find((i) => i.path === "conversations[1].turns[1]")!.message).toMatch(/cannot also have/);
  });

  it("rejects duplicate conversation names and an empty conversation list", () => {
    const dup = issuesOf({
      conversations: [
        { name: "x", turns: [{ content: "a" }] },
        { name: "x", turns: [{ content: "b" }] },
      ],
    });
    expect(dup).toEqual([{ path: "conversations[1].name", message: expect.stringMatching(/duplicate/) }]);
    expect(issuesOf({ conversations: [] }).map((i) => i.path)).toEqual(["conversations"]);
    expect(issuesOf([]).map((i) => i.path)).toEqual(["(root)"]);
  });

  it("puts every issue in the error message", () => {
    try {
      parseScript({ conversations: [{ name: "", turns: [{ delayMs: 1.5 }, { delayMs: 1 }] }] }, "demo.json");
      expect.unreachable();
    } catch (err) {
      const msg = (err as Error).message;
      expect(msg).toContain("demo.json");
      expect(msg).toContain("conversations[0].name");
      expect(msg).toContain("conversations[0].turns[0].delayMs");
      expect(msg).toContain("conversations[0].turns[1]: a turn needs content, toolCalls or error");
    }
  });
});

describe("loadScript", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sim-llm-script-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("loads and validates a file", async () => {
    const p = join(dir, "ok.json");
    await writeFile(
      p,
      JSON.stringify({ model: "m", conversations: [{ name: "a", turns: [{ content: "x" }] }] }),
    );
    expect((await loadScript(p)).model).toBe("m");
  });

  it("throws ScriptLoadError for a missing file or bad JSON, ScriptValidationError naming the file", async () => {
    await expect(loadScript(join(dir, "missing.json"))).rejects.toBeInstanceOf(ScriptLoadError);
    const bad = join(dir, "bad.json");
    await writeFile(bad, "{ not json");
    await expect(loadScript(bad)).rejects.toBeInstanceOf(ScriptLoadError);
    const invalid = join(dir, "invalid.json");
    await writeFile(invalid, JSON.stringify({ conversations: [{ name: "a" }] }));
    await expect(loadScript(invalid)).rejects.toThrow(/invalid\.json[\s\S]*conversations\[0\]\.turns/);
  });
});
