import { describe, expect, it } from "vitest";
import {
  errorResult,
  formatEntries,
  formatFileLines,
  parseRepoToolCall,
  REPO_TOOL_DEFINITIONS,
  REPO_TOOL_LIMITS,
  type RepoToolReader,
  repoToolSet,
} from "../src/repo-tools.ts";
import { capText } from "../src/tools.ts";

/** A reader over a few in-memory files that records every call it gets (to show refused calls never reach it). */
function memoryReader(files: Record<string, string>): RepoToolReader & { calls: string[] } {
  const calls: string[] = [];
  return {
    sha: "a".repeat(40),
    calls,
    async readBlob(path) {
      calls.push(`readBlob ${path}`);
      const text = files[path];
      if (text === undefined)
        throw Object.assign(new Error(`${path}: no such file at aaaa`), { name: "CommitReadError" });
      return { text, truncated: false, binary: text.includes("\0") };
    },
    async listTree(path) {
      calls.push(`listTree ${path}`);
      return {
        entries: Object.keys(files).map((name) => ({
          name,
          type: "blob" as const,
          bytes: files[name]!.length,
        })),
        truncated: false,
      };
    },
    async grep(pattern, path) {
      calls.push(`grep ${pattern} ${path ?? ""}`);
      return { text: "", truncated: false };
    },
    async log(path, n) {
      calls.push(`log ${path ?? ""} ${n}`);
      throw new Error("/home/someone/.longshot/planner/abc: secret detail");
    },
  };
}

describe("parseRepoToolCall", () => {
  it("accepts each tool's arguments and applies no defaults of its own", () => {
    expect(parseRepoToolCall("read_file", '{"path":"src/a.ts","offset":10,"limit":5}')).toEqual({
      ok: true,
      call: { name: "read_file", args: { path: "src/a.ts", offset: 10, limit: 5 } },
    });
    expect(parseRepoToolCall("list", "")).toEqual({ ok: true, call: { name: "list", args: {} } });
    expect(parseRepoToolCall("grep", '{"pattern":"-rf /","path":"src"}')).toEqual({
      ok: true,
      call: { name: "grep", args: { pattern: "-rf /", path: "src" } },
    });
    expect(parseRepoToolCall("git_log", '{"n":100}')).toEqual({
      ok: true,
      call: { name: "git_log", args: { n: 100 } },
    });
  });

  it.each([
    ["read_file", '{"path":"../../etc/passwd"}', "path: must not contain '..'"],
    ["read_file", '{"path":"src/../../x"}', "path: must not contain '..'"],
    ["read_file", '{"path":"--output=/tmp/x"}', "path: must not start with '-'"],
    ["read_file", '{"path":"/etc/passwd"}', "path: must be relative to the repository root"],
    ["read_file", '{"path":"~/.ssh/id_rsa"}', "path: must be relative to the repository root"],
    ["list", '{"path":":(top)x"}', "path: must not start with ':'"],
    ["list", '{"path":"a\\u0000b"}', "path: must not contain control characters"],
    ["grep", '{"pattern":"x","path":"-e"}', "path: must not start with '-'"],
    ["grep", '{"pattern":""}', "pattern: required"],
    ["grep", '{"pattern":"a\\nb"}', "pattern: must be one line"],
    ["git_log", '{"n":1000000000}', "n: Too big"],
    ["git_log", '{"n":0}', "n: Too small"],
    ["git_log", '{"n":2.5}', "n: Invalid input"],
    ["read_file", '{"path":"a","limit":100000}', "limit: Too big"],
    ["read_file", '{"path":"a","exec":"rm -rf /"}', 'Unrecognized key: "exec"'],
    ["read_file", "{}", "path: Invalid input"],
  ])("refuses %s %s: %s", (name, args, message) => {
    const r = parseRepoToolCall(name, args);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toMatch(new RegExp(`^error: invalid arguments for ${name}: `));
      expect(r.error).toContain(message);
      expect(r.error).toContain("nothing was run");
    }
  });

  it("refuses a path or pattern past its length limit, bad JSON and unknown tools", () => {
    const long = "a".repeat(REPO_TOOL_LIMITS.pathChars + 1);
    expect(parseRepoToolCall("list", JSON.stringify({ path: long }))).toMatchObject({ ok: false });
    const pattern = "a".repeat(REPO_TOOL_LIMITS.patternChars + 1);
    expect(parseRepoToolCall("grep", JSON.stringify({ pattern }))).toMatchObject({ ok: false });
    expect(parseRepoToolCall("grep", "{not json")).toMatchObject({
      ok: false,
      error: expect.stringMatching(/^error: arguments of grep are not valid JSON/),
    });
    expect(parseRepoToolCall("read_file", '"src/a.ts"')).toMatchObject({ ok: false });
    expect(parseRepoToolCall("bash", '{"command":"id"}')).toEqual({
      ok: false,
      error: 'error: unknown tool "bash"; the tools are read_file, list, grep, git_log',
    });
    expect(parseRepoToolCall("__proto__", "{}")).toMatchObject({ ok: false });
  });
});

describe("formatting and capping", () => {
  it("numbers the requested lines and says how to read on", () => {
    const text = "one\ntwo\nthree\nfour\n";
    expect(formatFileLines("a.txt", text, 2, 2)).toBe(
      "a.txt (lines 2-3 of 4):\n2\ttwo\n3\tthree\n[more lines: call read_file with offset 4]",
    );
    expect(formatFileLines("a.txt", text, 1, 400)).toBe(
      "a.txt (lines 1-4 of 4):\n1\tone\n2\ttwo\n3\tthree\n4\tfour",
    );
    expect(formatFileLines("a.txt", text, 9, 1)).toBe("a.txt: has 4 lines; offset 9 is past the end");
    expect(formatFileLines("a.txt", "", 1, 1)).toBe("a.txt: empty file");
    expect(formatFileLines("a.txt", "x\ny\n", 1, 5, true)).toContain("of 2+");
  });

  it("lists directories with a slash, files with their size", () => {
    expect(
      formatEntries(
        "src",
        [
          { name: "lib", type: "tree" },
          { name: "a.ts", type: "blob", bytes: 12 },
          { name: "vendor", type: "commit" },
        ],
        false,
      ),
    ).toBe("src:\nlib/\na.ts (12 bytes)\nvendor (submodule)");
    expect(formatEntries("", [], false)).toBe("(root): empty directory");
  });

  it("cuts long output at a line break with a note, and leaves short output alone", () => {
    expect(capText("short", 10)).toBe("short");
    const text = `${"x".repeat(30)}\n`.repeat(10);
    const cut = capText(text, 100, "narrow it");
    expect(cut).toBe(`${`${"x".repeat(30)}\n`.repeat(3)}[output cut at 93 of 310 characters; narrow it]`);
    expect(capText("y".repeat(50), 20)).toBe(`${"y".repeat(20)}\n[output cut at 20 of 50 characters]`);
  });

  it("shows the message of known reader errors only", () => {
    expect(errorResult(Object.assign(new Error("x: no such file at abc"), { name: "CommitReadError" }))).toBe(
      "error: x: no such file at abc",
    );
    expect(errorResult(new TypeError("/home/me/secret"))).toBe(
      "error: the repository could not be read (TypeError)",
    );
    expect(errorResult(undefined)).toBe("error: the repository could not be read (unknown error)");
  });
});

describe("repoToolSet", () => {
  it("offers the four tools with strict JSON Schema parameters", () => {
    expect(REPO_TOOL_DEFINITIONS.map((d) => d.function.name)).toEqual([
      "read_file",
      "list",
      "grep",
      "git_log",
    ]);
    for (const d of REPO_TOOL_DEFINITIONS)
      expect(d.function.parameters).toMatchObject({ additionalProperties: false });
  });

  it("runs valid calls, answers refused ones with an error without calling the reader, and never rejects", async () => {
    const reader = memoryReader({
      "src/a.ts": "export const a = 1;\n",
      "big.txt": "line of text\n".repeat(5000),
    });
    const seen: { tool: string; ok: boolean }[] = [];
    const tools = repoToolSet(reader, (c) => seen.push(c));
    expect(await tools.run("read_file", '{"path":"src/a.ts"}')).toBe(
      "src/a.ts (lines 1-1 of 1):\n1\texport const a = 1;",
    );
    expect(await tools.run("read_file", '{"path":"../../etc/passwd"}')).toMatch(/^error: invalid arguments/);
    expect(await tools.run("read_file", '{"path":"--output=/tmp/x"}')).toMatch(/^error: invalid arguments/);
    expect(await tools.run("git_log", '{"n":99999999}')).toMatch(/^error: invalid arguments/);
    expect(await tools.run("read_file", '{"path":"missing.ts"}')).toBe(
      "error: missing.ts: no such file at aaaa",
    );
    // An unexpected reader error is reported by name: its message (a local path here) is not shown.
    expect(await tools.run("git_log", "{}")).toBe("error: the repository could not be read (Error)");
    expect(await tools.run("grep", '{"pattern":"nothing"}')).toBe('no matches for "nothing"');
    const big = await tools.run("read_file", '{"path":"big.txt","limit":2000}');
    expect(big.length).toBeLessThan(REPO_TOOL_LIMITS.resultChars + 200);
    expect(big).toMatch(/\[output cut at \d+ of \d+ characters; narrow the request/);
    expect(reader.calls).toEqual([
      "readBlob src/a.ts",
      "readBlob missing.ts",
      "log  20",
      "grep nothing ",
      "readBlob big.txt",
    ]);
    expect(seen).toEqual([
      { tool: "read_file", ok: true },
      { tool: "read_file", ok: false },
      { tool: "read_file", ok: false },
      { tool: "git_log", ok: false },
      { tool: "read_file", ok: false },
      { tool: "git_log", ok: false },
      { tool: "grep", ok: true },
      { tool: "read_file", ok: true },
    ]);
  });
});
