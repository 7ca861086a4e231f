import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { createCommitReader, createRepoReader, GitUsageError } from "@longshot/git";
import { makeRepo, tempDir } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoToolSet } from "../src/repo-tools.ts";
import type { ToolSet } from "../src/tools.ts";

// The repository tools over a real git repository: read through a planner-style clone at a snapshot's commit,
// which later commits to the branch do not change.

const run = promisify(execFile);
let dir: Awaited<ReturnType<typeof tempDir>>;
let target: string;
let first: string;
let tools: ToolSet;
const files: Record<string, string> = {
  "SPEC.md": "# Spec\nA calculator.\n",
  "src/calc.ts": "export function add(a: number, b: number) {\n  return a + b;\n}\n",
  "src/util/strings.ts": "export const greet = (n: string) => 'hello ' + n;\n",
  "-rf": "a file named like an option\n",
  "big.txt": Array.from({ length: 3000 }, (_, i) => `line ${i + 1} of filler text`).join("\n"),
  "logo.bin": "PNG\0\0\0binary",
};

beforeAll(async () => {
  dir = await tempDir("longshot-repo-tools-");
  target = join(dir.path, "target");
  first = await makeRepo(target, files);
  const reader = createRepoReader(join(dir.path, "clones"));
  const snap = await reader.snapshot(target, "main");
  expect(snap.head).toBe(first);
  // The branch moves on after the snapshot: the tools still read the snapshot's commit.
  await writeFile(join(target, "src/calc.ts"), "export function sub() {}\n");
  await run("git", ["-C", target, "commit", "-qam", "second: sub"]);
  await reader.snapshot(target, "main");
  tools = repoToolSet(reader.atCommit(target, first));
}, 60_000);

afterAll(async () => {
  await dir?.cleanup();
});

describe("repository tools at a commit (real git)", () => {
  it("read_file returns numbered lines of the file at the commit, in ranges", async () => {
    expect(await tools.run("read_file", '{"path":"src/calc.ts"}')).toBe(
      "src/calc.ts (lines 1-3 of 3):\n1\texport function add(a: number, b: number) {\n2\t  return a + b;\n3\t}",
    );
    expect(await tools.run("read_file", '{"path":"./src/calc.ts","offset":2,"limit":1}')).toBe(
      "src/calc.ts (lines 2-2 of 3):\n2\t  return a + b;\n[more lines: call read_file with offset 3]",
    );
    const big = await tools.run("read_file", '{"path":"big.txt","offset":2990}');
    expect(big).toMatch(/^big\.txt \(lines 2990-3000 of 3000\):\n2990\tline 2990 of filler text/);
    expect(await tools.run("read_file", '{"path":"logo.bin"}')).toBe("logo.bin: binary file, not shown");
  });

  it("read_file and list say clearly when a path is missing or of the other kind", async () => {
    const short = first.slice(0, 12);
    expect(await tools.run("read_file", '{"path":"nope.ts"}')).toBe(
      `error: nope.ts: no such file at ${short}`,
    );
    expect(await tools.run("read_file", '{"path":"src"}')).toBe("error: src: not a file (tree)");
    expect(await tools.run("list", '{"path":"src/calc.ts"}')).toBe("error: src/calc.ts: not a directory");
    expect(await tools.run("list", '{"path":"nope"}')).toBe(`error: nope: no such directory at ${short}`);
  });

  it("list shows a directory with sizes and subdirectories", async () => {
    const size = (name: string) => Buffer.byteLength(files[name]!);
    expect(await tools.run("list", "{}")).toBe(
      `(root):\n-rf (${size("-rf")} bytes)\nSPEC.md (${size("SPEC.md")} bytes)\nbig.txt (${size("big.txt")} bytes)\nlogo.bin (${size("logo.bin")} bytes)\nsrc/`,
    );
    expect(await tools.run("list", '{"path":"src/"}')).toBe(
      `src:\ncalc.ts (${size("src/calc.ts")} bytes)\nutil/`,
    );
  });

  it("grep finds lines at the commit as path:line:text, with literal paths and a pattern that looks like an option", async () => {
    expect(await tools.run("grep", '{"pattern":"function (add|sub)"}')).toBe(
      "src/calc.ts:1:export function add(a: number, b: number) {\n",
    );
    expect(await tools.run("grep", '{"pattern":"hello","path":"src/util"}')).toBe(
      "src/util/strings.ts:1:export const greet = (n: string) => 'hello ' + n;\n",
    );
    // A pattern starting with '-' is still a pattern (passed with -e), never an option.
    expect(await tools.run("grep", '{"pattern":"--output=x"}')).toBe('no matches for "--output=x"');
    // Globs are not expanded (literal pathspecs).
    expect(await tools.run("grep", '{"pattern":"export","path":"src/*.ts"}')).toBe(
      'no matches for "export" under src/*.ts',
    );
    expect(await tools.run("grep", '{"pattern":"a("}')).toMatch(/^error: grep: /);
    const many = await tools.run("grep", '{"pattern":"filler"}');
    expect(many).toMatch(/\[output cut at \d+ of \d+ characters/);
    expect(many.length).toBeLessThan(16_384 + 200);
  });

  it("git_log lists the commits up to the snapshot, not the later one", async () => {
    const log = await tools.run("git_log", "{}");
    expect(log).toBe(`${first.slice(0, 7)} initial\n`);
    expect(await tools.run("git_log", '{"path":"src/calc.ts","n":5}')).toBe(`${first.slice(0, 7)} initial\n`);
    expect(await tools.run("git_log", '{"path":"missing"}')).toBe("no commits touching missing");
  });

  it("hostile arguments get an error result and run nothing", async () => {
    const outFile = join(dir.path, "x");
    for (const [name, args] of [
      ["read_file", '{"path":"../../etc/passwd"}'],
      ["read_file", JSON.stringify({ path: `--output=${outFile}` })],
      ["read_file", '{"path":"/etc/passwd"}'],
      ["list", JSON.stringify({ path: `--output=${outFile}` })],
      ["grep", JSON.stringify({ pattern: "x", path: `--output=${outFile}` })],
      ["git_log", JSON.stringify({ path: `--output=${outFile}` })],
      ["git_log", '{"n":1000000000}'],
      ["git_log", '{"n":"5; rm -rf /"}'],
    ] as const) {
      expect(await tools.run(name, args), `${name} ${args}`).toMatch(/^error: invalid arguments for /);
    }
    expect(existsSync(outFile)).toBe(false);
    // A file whose name starts with '-' is still refused (no leading '-' at all), rather than risk an option.
    expect(await tools.run("read_file", '{"path":"-rf"}')).toMatch(/must not start with '-'/);
  });

  it("the git adapter refuses option-like and escaping paths itself, and a non-sha commit", async () => {
    const at = createCommitReader(join(dir.path, "clones", "x"), first);
    await expect(at.readBlob("--output=/tmp/x", 100)).rejects.toBeInstanceOf(GitUsageError);
    await expect(at.listTree("../..", 100)).rejects.toBeInstanceOf(GitUsageError);
    await expect(at.grep("x", ":(exclude)a", 100)).rejects.toBeInstanceOf(GitUsageError);
    await expect(at.log(undefined, 1e9)).rejects.toBeInstanceOf(GitUsageError);
    expect(() => createCommitReader(target, "HEAD")).toThrow(GitUsageError);
    expect(() => createCommitReader(target, `--output=${first}`)).toThrow(GitUsageError);
  });

  it("reads no working tree: a file only in the clone's checkout is not visible", async () => {
    const clones = join(dir.path, "clones");
    const [clone] = (await run("ls", [clones])).stdout.trim().split("\n");
    await mkdir(join(clones, clone!, "src"), { recursive: true });
    await writeFile(join(clones, clone!, "src/untracked.ts"), "export const leaked = true;\n");
    expect(await tools.run("read_file", '{"path":"src/untracked.ts"}')).toMatch(/no such file/);
    expect(await tools.run("grep", '{"pattern":"leaked"}')).toBe('no matches for "leaked"');
  });
});
