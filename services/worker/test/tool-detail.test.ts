import { describe, expect, it } from "vitest";
import { TOOL_DETAIL_MAX_CHARS, toolCallDetail } from "../src/domain/tool-detail.ts";

describe("tool call detail", () => {
  it("shows what a call does in one line", () => {
    expect(toolCallDetail("bash", { command: "node --test\nnpm run build" })).toBe(
      "node --test npm run build",
    );
    expect(toolCallDetail("write", { path: "src/a.ts", content: "x" })).toBe("src/a.ts");
    expect(toolCallDetail("edit", { path: "src/a.ts", edits: [] })).toBe("src/a.ts");
    expect(toolCallDetail("grep", { pattern: "TODO", path: "src" })).toBe("TODO in src");
    expect(toolCallDetail("custom", { q: 1 })).toBe('{"q":1}');
    expect(toolCallDetail("ls", {})).toBeUndefined();
    expect(toolCallDetail("bash", undefined)).toBeUndefined();
  });

  it("cuts a long one", () => {
    const d = toolCallDetail("bash", { command: "x".repeat(1000) })!;
    expect(d).toHaveLength(TOOL_DETAIL_MAX_CHARS);
    expect(d.endsWith("…")).toBe(true);
  });
});
