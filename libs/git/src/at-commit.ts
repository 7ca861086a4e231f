import { GitUsageError } from "./errors.ts";
import { type GitCappedResult, runGit, runGitCapped } from "./exec.ts";

/** One entry of a directory at a commit (`git ls-tree`): a file (`blob`), a directory (`tree`) or a submodule. */
export interface TreeEntry {
  name: string;
  type: "blob" | "tree" | "commit";
  /** Size in bytes, for files only. */
  bytes?: number;
}

/**
 * A read of a commit failed for a reason the reader can be told (no such path, not a file, not a directory, a bad
 * pattern). The message names paths relative to the repository and the commit by its short sha, never a local
 * directory.
 */
export class CommitReadError extends Error {
  override name = "CommitReadError";
}

/**
 * Read-only access to one commit of a local repository, from git objects only: no working tree, index, hooks or
 * writes. Made by {@link createCommitReader}; every method throws {@link CommitReadError} for a problem with its
 * arguments or the path, `GitUsageError` for an argument it refuses by design (a path starting with `-` or `:`,
 * absolute, or with a `..` segment), `GitError` when git cannot run or times out.
 */
export interface CommitReader {
  /** The commit read (full sha). */
  readonly sha: string;
  /**
   * The file at `path` as UTF-8 text, at most `maxBytes` (then `truncated`); `binary` when its first 8000 bytes
   * hold a NUL (the text is then empty).
   */
  readBlob(path: string, maxBytes: number): Promise<{ text: string; truncated: boolean; binary: boolean }>;
  /** The entries of the directory `path` ("" = the root), in git's order, reading at most `maxBytes` of listing. */
  listTree(path: string, maxBytes: number): Promise<{ entries: TreeEntry[]; truncated: boolean }>;
  /**
   * `git grep -n -I -E` of `pattern` (an extended regular expression) over the commit, under `path` when given:
   * lines `<path>:<line>:<text>`, at most `maxBytes` of them (then `truncated`); "" when nothing matches.
   */
  grep(
    pattern: string,
    path: string | undefined,
    maxBytes: number,
  ): Promise<{ text: string; truncated: boolean }>;
  /** `git log --oneline` of the last `n` (1–1000) commits up to this one, touching `path` when given. */
  log(path: string | undefined, n: number): Promise<string>;
}

/** Per-command timeout of a commit read, ms. */
const READ_TIMEOUT_MS = 20_000;

/**
 * Refuses a repository path that git could read as an option (`-…`), as pathspec magic (`:…`), or that points
 * outside the tree (absolute, a `..` segment, NUL or other control characters).
 * @throws GitUsageError naming the problem.
 */
export function assertTreePath(path: string): void {
  if (path.startsWith("-")) throw new GitUsageError(`path must not start with '-': ${JSON.stringify(path)}`);
  if (path.startsWith(":")) throw new GitUsageError(`path must not start with ':': ${JSON.stringify(path)}`);
  if (path.startsWith("/")) throw new GitUsageError(`path must be relative: ${JSON.stringify(path)}`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\x00-\x1f\x7f]/.test(path)) throw new GitUsageError("path must not contain control characters");
  if (path.split("/").includes(".."))
    throw new GitUsageError(`path must not contain '..': ${JSON.stringify(path)}`);
}

/**
 * A {@link CommitReader} over commit `sha` (40 or 64 hex digits) of the repository at `dir` (any clone holding the
 * commit; nothing in it is changed). Pathspecs are literal (`--literal-pathspecs`: no globs, no magic).
 * @throws GitUsageError when `sha` is not a full hex object id.
 */
export function createCommitReader(dir: string, sha: string): CommitReader {
  if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(sha)) throw new GitUsageError(`not a full commit sha: ${sha}`);
  const short = sha.slice(0, 12);
  /** The first line git printed, without `fatal: ` and with the commit shortened and the clone's dir hidden. */
  const why = (r: { stderr: string; stdout: string }) =>
    ((r.stderr.trim() || r.stdout.trim()).split("\n")[0] ?? "")
      .replace(/^(fatal|error): /, "")
      .replaceAll(sha, short)
      .replaceAll(dir, ".") || "git failed";
  const run = (args: string[], maxBytes: number): Promise<GitCappedResult> =>
    runGitCapped(dir, ["--literal-pathspecs", ...args], { maxBytes, timeoutMs: READ_TIMEOUT_MS });
  const clean = (path: string) => path.replace(/^(\.\/)+/, "").replace(/\/+$/, "");
  return {
    sha,
    async readBlob(path, maxBytes) {
      assertTreePath(path);
      const p = clean(path);
      if (p === "" || p === ".") throw new CommitReadError("not a file: the repository root (use list)");
      const type = await runGit(dir, ["cat-file", "-t", `${sha}:${p}`], { timeoutMs: READ_TIMEOUT_MS });
      if (type.code !== 0) throw new CommitReadError(`${p}: no such file at ${short}`);
      if (type.stdout.trim() !== "blob")
        throw new CommitReadError(`${p}: not a file (${type.stdout.trim()})`);
      const r = await run(["cat-file", "blob", `${sha}:${p}`], maxBytes);
      if (r.code !== 0 && !r.truncated) throw new CommitReadError(`${p}: ${why(r)}`);
      if (r.stdout.slice(0, 8000).includes("\0")) return { text: "", truncated: r.truncated, binary: true };
      return { text: r.stdout, truncated: r.truncated, binary: false };
    },
    async listTree(path, maxBytes) {
      assertTreePath(path);
      const p = clean(path);
      const tree = p === "" || p === "." ? `${sha}:` : `${sha}:${p}`;
      const r = await run(["ls-tree", "-z", "-l", tree], maxBytes);
      if (r.code !== 0 && !r.truncated) {
        const msg = why(r);
        throw new CommitReadError(
          /not a tree object/.test(msg)
            ? `${p}: not a directory`
            : `${p || "."}: no such directory at ${short}`,
        );
      }
      const records = r.stdout.split("\0").filter((x) => x.length > 0);
      // The last record of a cut listing may be cut too.
      if (r.truncated) records.pop();
      const entries: TreeEntry[] = [];
      for (const rec of records) {
        const m = /^\d+ (blob|tree|commit) [0-9a-f]+ +(-|\d+)\t(.*)$/s.exec(rec);
        if (!m) continue;
        const type = m[1] as TreeEntry["type"];
        entries.push(type === "blob" ? { name: m[3]!, type, bytes: Number(m[2]) } : { name: m[3]!, type });
      }
      return { entries, truncated: r.truncated };
    },
    async grep(pattern, path, maxBytes) {
      if (path !== undefined) assertTreePath(path);
      const p = path === undefined ? "" : clean(path);
      const args = ["grep", "-n", "-I", "-E", "--no-color", "-e", pattern, sha, "--"];
      if (p !== "" && p !== ".") args.push(p);
      const r = await run(args, maxBytes);
      if (r.code === 1 && !r.truncated) return { text: "", truncated: false };
      if (r.code !== 0 && !r.truncated) throw new CommitReadError(`grep: ${why(r)}`);
      // A cut listing ends in a partial line: drop it. Every line starts `<sha>:`, which is left out.
      const out = r.truncated ? r.stdout.slice(0, r.stdout.lastIndexOf("\n") + 1) : r.stdout;
      const text = out
        .split("\n")
        .map((line) => (line.startsWith(`${sha}:`) ? line.slice(sha.length + 1) : line))
        .join("\n");
      return { text, truncated: r.truncated };
    },
    async log(path, n) {
      if (path !== undefined) assertTreePath(path);
      if (!Number.isInteger(n) || n < 1 || n > 1000) throw new GitUsageError(`n must be 1–1000, got ${n}`);
      const p = path === undefined ? "" : clean(path);
      const args = ["log", "--oneline", "--no-decorate", "--no-color", `-n${n}`, sha, "--"];
      if (p !== "" && p !== ".") args.push(p);
      const r = await run(args, 1024 * 1024);
      if (r.code !== 0 && !r.truncated) throw new CommitReadError(`log: ${why(r)}`);
      return r.stdout;
    },
  };
}
