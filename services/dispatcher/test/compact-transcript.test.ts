import { describe, expect, it } from "vitest";
import { CompactTranscript, TRANSCRIPT_LINE_MAX_CHARS } from "../src/domain/compact-transcript.ts";

const at = new Date("2026-01-02T03:04:05.000Z");

describe("compact transcript", () => {
  it("keeps every line of a short attempt, newlines folded", () => {
    const t = new CompactTranscript();
    t.add(at, "worker started");
    t.add(at, "tool bash:\nnode --test");
    expect(t.result()).toEqual({
      text: "2026-01-02T03:04:05.000Z worker started\n2026-01-02T03:04:05.000Z tool bash: node --test\n",
      lines: 2,
      omittedLines: 0,
    });
  });

  it("stays within its size: the first and the last lines, and how many were left out between them", () => {
    const max = 2000;
    const t = new CompactTranscript(max);
    for (let i = 0; i < 500; i++) t.add(at, `line ${i}`);
    const r = t.result();
    expect(Buffer.byteLength(r.text)).toBeLessThanOrEqual(max + 40);
    expect(r.lines + r.omittedLines).toBe(500);
    const lines = r.text.trimEnd().split("\n");
    expect(lines[0]).toBe("2026-01-02T03:04:05.000Z line 0");
    expect(lines.at(-1)).toBe("2026-01-02T03:04:05.000Z line 499");
    expect(lines).toContain(`… ${r.omittedLines} lines left out …`);
    expect(r.omittedLines).toBeGreaterThan(400);
  });

  it("cuts a very long line", () => {
    const t = new CompactTranscript();
    t.add(at, "x".repeat(5000));
    const line = t.result().text.trimEnd();
    expect(line.length).toBe("2026-01-02T03:04:05.000Z ".length + TRANSCRIPT_LINE_MAX_CHARS);
    expect(line.endsWith("…")).toBe(true);
  });
});
