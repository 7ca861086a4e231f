import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Task } from "@longshot/contracts";
import { tempDir } from "@longshot/testkit";
import { describe, expect, it } from "vitest";
import { createTranscripts, transcriptText } from "../src/adapters/transcripts.ts";

describe("worker transcript lines", () => {
  it("keeps progress and the handoff, never model traffic", () => {
    expect(transcriptText({ kind: "progress", message: "tool bash", toolCalls: 3 })).toBe(
      "tool bash (3 tool calls)",
    );
    expect(transcriptText({ kind: "progress", message: "agent stopped", toolCalls: 3, tokens: 10 })).toBe(
      "agent stopped (3 tool calls, 10 tokens)",
    );
    expect(
      transcriptText({ kind: "progress", message: "tool bash", detail: "node --test", toolCalls: 4 }),
    ).toBe("tool bash: node --test (4 tool calls)");
    expect(transcriptText({ kind: "model.cancel", id: "m1" })).toBeUndefined();
  });

  it("writes each attempt's lines in order to its own file, and forgets a file once its lines are written", async () => {
    const dir = await tempDir("longshot-transcripts-");
    try {
      const t = createTranscripts(dir.path);
      const task = (id: string) => ({ runId: "r1", id, attempt: 1 }) as Task;
      for (let i = 0; i < 200; i++) t.append(task(`t${i % 4}`), { kind: "progress", message: `line ${i}` });
      expect(t.pending()).toBe(4);
      await t.idle();
      expect(t.pending()).toBe(0);
      const lines = (await readFile(join(dir.path, "r1", "t1.1.log"), "utf8")).trim().split("\n");
      expect(lines.map((l) => l.split(" ").slice(1).join(" "))).toEqual(
        Array.from({ length: 50 }, (_, k) => `line ${4 * k + 1}`),
      );
    } finally {
      await dir.cleanup();
    }
  });
});
