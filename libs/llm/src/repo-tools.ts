/**
 * Read-only repository tools for planners (`read_file`, `list`, `grep`, `git_log`): their definitions as offered
 * to the model, the validation of the model's arguments, and the formatting and capping of results. Pure apart
 * from the injected {@link RepoToolReader} (in production `CommitReader` of @longshot/git: git objects of one
 * commit, no working tree, no shell, no writes). The model is untrusted: every argument is checked here before
 * the reader sees it, and a refused one is an `error: …` result, never a call.
 */
import { z } from "zod";
import { capText, type ToolDefinition, type ToolSet } from "./tools.ts";

/** One directory entry as a {@link RepoToolReader} lists it. */
export interface RepoToolEntry {
  name: string;
  type: "blob" | "tree" | "commit";
  bytes?: number;
}

/**
 * What the repository tools read, at one fixed commit (structurally `CommitReader` of @longshot/git). Methods may
 * throw; the message of an error named `CommitReadError` or `GitUsageError` is shown to the model, any other
 * error only by its name.
 */
export interface RepoToolReader {
  readonly sha: string;
  readBlob(path: string, maxBytes: number): Promise<{ text: string; truncated: boolean; binary: boolean }>;
  listTree(path: string, maxBytes: number): Promise<{ entries: RepoToolEntry[]; truncated: boolean }>;
  grep(
    pattern: string,
    path: string | undefined,
    maxBytes: number,
  ): Promise<{ text: string; truncated: boolean }>;
  log(path: string | undefined, n: number): Promise<string>;
}

/** Limits of the repository tools. */
export const REPO_TOOL_LIMITS = {
  /** Longest result of one tool call, characters. */
  resultChars: 16_384,
  /** Longest path argument, characters. */
  pathChars: 1024,
  /** Longest grep pattern, characters. */
  patternChars: 512,
  /** Lines of a file read_file returns when no `limit` is given, and the most it returns. */
  defaultLines: 400,
  maxLines: 2000,
  /** Default and most commits of git_log. */
  defaultCommits: 20,
  maxCommits: 100,
  /** Bytes of a file, listing or grep output read from git before formatting. */
  readBytes: 1024 * 1024,
} as const;

/**
 * A path inside the repository: relative, at most 1024 characters, no leading `-` (an option) or `:` (pathspec
 * magic), no `..` segment, no control characters.
 */
const RepoPath = z
  .string()
  .max(REPO_TOOL_LIMITS.pathChars, `at most ${REPO_TOOL_LIMITS.pathChars} characters`)
  .refine((p) => !p.startsWith("-"), "must not start with '-'")
  .refine((p) => !p.startsWith(":"), "must not start with ':'")
  .refine((p) => !p.startsWith("/") && !p.startsWith("~"), "must be relative to the repository root")
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  .refine((p) => !/[\x00-\x1f\x7f]/.test(p), "must not contain control characters")
  .refine((p) => !p.split(/[\\/]/).includes(".."), "must not contain '..'");

/** Arguments of each tool (strict: an unknown key is an error the model is told about). */
export const RepoToolArgs = {
  read_file: z.strictObject({
    path: RepoPath.min(1, "required"),
    offset: z.int().min(1).max(10_000_000).optional(),
    limit: z.int().min(1).max(REPO_TOOL_LIMITS.maxLines).optional(),
  }),
  list: z.strictObject({ path: RepoPath.optional() }),
  grep: z.strictObject({
    pattern: z
      .string()
      .min(1, "required")
      .max(REPO_TOOL_LIMITS.patternChars, `at most ${REPO_TOOL_LIMITS.patternChars} characters`)
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
      .refine((p) => !/[\x00\n\r]/.test(p), "must be one line"),
    path: RepoPath.optional(),
  }),
  git_log: z.strictObject({
    path: RepoPath.optional(),
    n: z.int().min(1).max(REPO_TOOL_LIMITS.maxCommits).optional(),
  }),
} as const;

/** The name of a repository tool. */
export type RepoToolName = keyof typeof RepoToolArgs;

/** A validated call of a repository tool. */
export type RepoToolCall = {
  [K in RepoToolName]: { name: K; args: z.infer<(typeof RepoToolArgs)[K]> };
}[RepoToolName];

const pathProp = (what: string) => ({
  type: "string",
  description: `${what}, relative to the repository root (e.g. "src/app.ts")`,
  maxLength: REPO_TOOL_LIMITS.pathChars,
});

/** The tools as offered to the model (OpenAI function definitions). */
export const REPO_TOOL_DEFINITIONS: readonly ToolDefinition[] = [
  {
    type: "function",
    function: {
      name: "read_file",
      description: `Read a file of the repository at the planned commit, with line numbers. Returns at most ${REPO_TOOL_LIMITS.defaultLines} lines unless limit says otherwise (at most ${REPO_TOOL_LIMITS.maxLines}).`,
      parameters: {
        type: "object",
        properties: {
          path: pathProp("The file"),
          offset: { type: "integer", minimum: 1, description: "First line to return (1-based). Default 1." },
          limit: {
            type: "integer",
            minimum: 1,
            maximum: REPO_TOOL_LIMITS.maxLines,
            description: `Lines to return. Default ${REPO_TOOL_LIMITS.defaultLines}.`,
          },
        },
        required: ["path"],
        additionalProperties: false,
      },
    },
  },
  {
    type: "function",
    function: {
      name: "list",
      description:
        "List a directory of the repository at the planned commit: subdirectories end in '/', files show their size.",
      parameters: {
        type: "object",
        properties: { path: pathProp("The directory (omit for the root)") },
        additionalProperties: false,
      },
    },
  },
  {
    type: "function",
    function: {
      name: "grep",
      description:
        "Search the repository's text files at the planned commit for an extended regular expression (git grep -E). Returns matching lines as path:line:text.",
      parameters: {
        type: "object",
        properties: {
          pattern: {
            type: "string",
            description: "Extended regular expression (POSIX ERE), one line",
            maxLength: REPO_TOOL_LIMITS.patternChars,
          },
          path: pathProp("Only search under this file or directory"),
        },
        required: ["pattern"],
        additionalProperties: false,
      },
    },
  },
  {
    type: "function",
    function: {
      name: "git_log",
      description:
        "Recent commits up to the planned commit, newest first, one line each (short sha and subject).",
      parameters: {
        type: "object",
        properties: {
          path: pathProp("Only commits touching this file or directory"),
          n: {
            type: "integer",
            minimum: 1,
            maximum: REPO_TOOL_LIMITS.maxCommits,
            description: `Number of commits. Default ${REPO_TOOL_LIMITS.defaultCommits}.`,
          },
        },
        additionalProperties: false,
      },
    },
  },
];

/**
 * Validates a model's tool call: `name` must be a repository tool and `argsJson` a JSON object matching its
 * arguments. Returns the call, or the error text to show the model (never throws).
 */
export function parseRepoToolCall(
  name: string,
  argsJson: string,
): { ok: true; call: RepoToolCall } | { ok: false; error: string } {
  if (!Object.hasOwn(RepoToolArgs, name))
    return {
      ok: false,
      error: `error: unknown tool ${JSON.stringify(name.slice(0, 64))}; the tools are ${Object.keys(RepoToolArgs).join(", ")}`,
    };
  const tool = name as RepoToolName;
  let raw: unknown;
  try {
    raw = argsJson.trim() === "" ? {} : JSON.parse(argsJson);
  } catch (e) {
    return { ok: false, error: `error: arguments of ${tool} are not valid JSON: ${(e as Error).message}` };
  }
  const parsed = RepoToolArgs[tool].safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join(".") || "(arguments)"}: ${i.message}`)
      .join("; ");
    return { ok: false, error: `error: invalid arguments for ${tool}: ${problems}; nothing was run` };
  }
  return { ok: true, call: { name: tool, args: parsed.data } as RepoToolCall };
}

/**
 * `text` as numbered lines `offset`…`offset+limit−1` (1-based), with a header naming the file and the range, and a
 * note on how to read on when lines remain. `more` is true when the text itself was cut before its end.
 */
export function formatFileLines(
  path: string,
  text: string,
  offset: number,
  limit: number,
  more = false,
): string {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const total = lines.length;
  if (total === 0) return `${path}: empty file`;
  if (offset > total)
    return `${path}: has ${total}${more ? "+" : ""} lines; offset ${offset} is past the end`;
  const end = Math.min(total, offset + limit - 1);
  const width = String(end).length;
  const body = lines
    .slice(offset - 1, end)
    .map((l, i) => `${String(offset + i).padStart(width)}\t${l}`)
    .join("\n");
  const rest = end < total || more ? `\n[more lines: call read_file with offset ${end + 1}]` : "";
  return `${path} (lines ${offset}-${end} of ${total}${more ? "+" : ""}):\n${body}${rest}`;
}

/** A directory listing: `name/` for directories, `name (N bytes)` for files, `name (submodule)`. */
export function formatEntries(path: string, entries: readonly RepoToolEntry[], truncated: boolean): string {
  const where = path === "" ? "(root)" : path;
  if (entries.length === 0) return `${where}: empty directory`;
  const lines = entries.map((e) =>
    e.type === "tree"
      ? `${e.name}/`
      : e.type === "commit"
        ? `${e.name} (submodule)`
        : `${e.name} (${e.bytes} bytes)`,
  );
  return `${where}:\n${lines.join("\n")}${truncated ? "\n[listing cut: list a subdirectory]" : ""}`;
}

/** Names of the errors whose message the model may see (everything else is reported by name only). */
const SHOWN_ERRORS = new Set(["CommitReadError", "GitUsageError"]);

/** The result text of a reader error: its message for the known kinds, else only its name. */
export function errorResult(err: unknown): string {
  const e = err as { name?: unknown; message?: unknown } | null;
  if (e && typeof e.name === "string" && SHOWN_ERRORS.has(e.name)) return `error: ${String(e.message)}`;
  return `error: the repository could not be read (${typeof e?.name === "string" ? e.name : "unknown error"})`;
}

/** A validated path as shown back: without leading `./` and trailing `/` ("" for the root). */
const shown = (path: string | undefined) =>
  path === undefined
    ? undefined
    : path
        .replace(/^(\.\/)+/, "")
        .replace(/\/+$/, "")
        .replace(/^\.$/, "");

/** Runs a validated call against `reader` and formats the result (uncapped; errors propagate). */
async function runCall(reader: RepoToolReader, call: RepoToolCall): Promise<string> {
  const max = REPO_TOOL_LIMITS.readBytes;
  switch (call.name) {
    case "read_file": {
      const { offset = 1, limit = REPO_TOOL_LIMITS.defaultLines } = call.args;
      const path = shown(call.args.path)!;
      const blob = await reader.readBlob(path, max);
      if (blob.binary) return `${path}: binary file, not shown`;
      return formatFileLines(path, blob.text, offset, limit, blob.truncated);
    }
    case "list": {
      const path = shown(call.args.path) ?? "";
      const listing = await reader.listTree(path, max);
      return formatEntries(path, listing.entries, listing.truncated);
    }
    case "grep": {
      const { pattern } = call.args;
      const path = shown(call.args.path);
      const r = await reader.grep(pattern, path, max);
      if (r.text === "") return `no matches for ${JSON.stringify(pattern)}${path ? ` under ${path}` : ""}`;
      return r.truncated ? `${r.text}[more matches: narrow the pattern or the path]` : r.text;
    }
    case "git_log": {
      const { n = REPO_TOOL_LIMITS.defaultCommits } = call.args;
      const path = shown(call.args.path);
      const out = await reader.log(path, n);
      return out === "" ? `no commits${path ? ` touching ${path}` : ""}` : out;
    }
  }
}

/**
 * The repository tools over `reader` as a {@link ToolSet}: each call validated ({@link parseRepoToolCall}), run,
 * formatted and cut at `REPO_TOOL_LIMITS.resultChars`; a refused argument or a failed read is an `error: …`
 * result. `onCall` (a log line or a metric) sees each call's tool name (or the unknown name as sent, ≤ 64
 * characters) and whether it produced a result (`ok`) or an error. Never rejects.
 */
export function repoToolSet(
  reader: RepoToolReader,
  onCall?: (call: { tool: string; ok: boolean }) => void,
): ToolSet {
  return {
    definitions: REPO_TOOL_DEFINITIONS,
    async run(name, argsJson) {
      const parsed = parseRepoToolCall(name, argsJson);
      if (!parsed.ok) {
        onCall?.({ tool: name.slice(0, 64), ok: false });
        return parsed.error;
      }
      let out: string;
      let ok = true;
      try {
        out = await runCall(reader, parsed.call);
      } catch (err) {
        out = errorResult(err);
        ok = false;
      }
      onCall?.({ tool: parsed.call.name, ok });
      return capText(
        out,
        REPO_TOOL_LIMITS.resultChars,
        "narrow the request (a path, offset/limit, a more specific pattern)",
      );
    },
  };
}
