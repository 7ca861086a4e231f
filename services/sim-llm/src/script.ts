import { readFile } from "node:fs/promises";
import { z } from "zod";

/** A matcher written `/source/flags` is a regular expression; anything else is a plain substring. */
const REGEX_MATCHER = /^\/(.*)\/([a-z]*)$/s;

/**
 * Compiles a matcher string. `/source/flags` becomes a RegExp (flags `g`/`y` are dropped so that `test`
 * stays stateless); any other string is returned as-is and means "contains this substring".
 * @throws SyntaxError when the string looks like a regex but does not compile.
 */
export function compileMatcher(matcher: string): string | RegExp {
  const m = REGEX_MATCHER.exec(matcher);
  if (m === null) return matcher;
  const flags = (m[2] ?? "").replace(/[gy]/g, "");
  return new RegExp(m[1] ?? "", flags);
}

const MatcherSchema = z.string().superRefine((value, ctx) => {
  try {
    compileMatcher(value);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: `invalid regex matcher: ${(err as Error).message}` });
  }
});

const ToolCallSchema = z.strictObject({
  /** Tool call id; generated (`call_…`, unique per response) when absent. */
  id: z.string().min(1).optional(),
  /** Function name, e.g. `write`, `edit`, `bash`, `read` for the Pi coding agent. */
  name: z.string().min(1),
  /** Function arguments: an object (JSON-stringified on the wire) or an already-serialized string. */
  arguments: z.union([z.record(z.string(), z.unknown()), z.string()]).default({}),
});

const TurnErrorSchema = z.strictObject({
  /** HTTP status to answer with (400–599). */
  status: z.int().min(400).max(599),
  message: z.string().min(1),
  /** OpenAI error `type`; derived from the status when absent. */
  type: z.string().min(1).optional(),
  /** OpenAI error `code`; `"injected_fault"` when absent. */
  code: z.string().min(1).optional(),
});

const TurnSchema = z
  .strictObject({
    content: z.string().optional(),
    toolCalls: z.array(ToolCallSchema).min(1).optional(),
    /** Wait this long (ms) before answering. */
    delayMs: z.int().min(0).optional(),
    /**
     * After `delayMs`, hold the answer until this path exists on sim-llm's host (polled every 50 ms): a test
     * orders a model reply after an event it observed elsewhere (e.g. another task's branch landing).
     */
    waitForFile: z.string().min(1).optional(),
    /** Answer with this HTTP error instead of a completion (fault injection). */
    error: TurnErrorSchema.optional(),
  })
  .superRefine((turn, ctx) => {
    if (turn.error !== undefined) {
      if (turn.content !== undefined || turn.toolCalls !== undefined) {
        ctx.addIssue({ code: "custom", message: "an error turn cannot also have content or toolCalls" });
      }
    } else if (turn.content === undefined && turn.toolCalls === undefined) {
      ctx.addIssue({ code: "custom", message: "a turn needs content, toolCalls or error" });
    }
  });

const ConversationSchema = z.strictObject({
  /** Shown in logs and in "no matching conversation" errors. Unique within the script. */
  name: z.string().min(1),
  description: z.string().optional(),
  /** Every given matcher must match. Absent ⇒ this conversation matches every request (fallback). */
  match: z
    .strictObject({
      /** Tested against the concatenated `system` and `developer` messages. */
      system: MatcherSchema.optional(),
      /** Tested against the first `user` message. */
      user: MatcherSchema.optional(),
    })
    .optional(),
  turns: z.array(TurnSchema).min(1),
  /** What to do once every turn was used: repeat the last turn (default) or answer HTTP 400. */
  after: z.enum(["repeat", "error"]).default("repeat"),
});

/** Zod schema of a sim-llm script file (see services/sim-llm/README.md). */
export const ScriptSchema = z
  .strictObject({
    description: z.string().optional(),
    /** Model id served by `/v1/models` and echoed in completions. */
    model: z.string().min(1).default("sim-1"),
    /** Stream pacing; absent ⇒ streams are written as fast as possible. */
    latency: z
      .strictObject({
        /** Delay (ms) before the first chunk of a stream. */
        ttftMs: z.number().min(0).default(0),
        /** Output pacing in (estimated) tokens per second; absent ⇒ no pacing after the first chunk. */
        tokensPerSecond: z.number().positive().optional(),
      })
      .optional(),
    conversations: z.array(ConversationSchema).min(1),
  })
  .superRefine((script, ctx) => {
    const seen = new Map<string, number>();
    script.conversations.forEach((c, i) => {
      const first = seen.get(c.name);
      if (first !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["conversations", i, "name"],
          message: `duplicate conversation name "${c.name}" (also conversations[${first}])`,
        });
      } else seen.set(c.name, i);
    });
  });

/** A validated script, with defaults applied (`model`, `after`, tool call `arguments`). */
export type Script = z.output<typeof ScriptSchema>;
/** A script as written in JSON, before defaults are applied. */
export type ScriptInput = z.input<typeof ScriptSchema>;
/** One scripted conversation. */
export type Conversation = Script["conversations"][number];
/** One scripted turn (one model response). */
export type Turn = Conversation["turns"][number];
/** One scripted tool call. */
export type ScriptToolCall = NonNullable<Turn["toolCalls"]>[number];

/** One problem found in a script: where (`conversations[0].turns[1].content`) and what. */
export interface ScriptIssue {
  path: string;
  message: string;
}

/** The script does not satisfy {@link ScriptSchema}; `issues` lists every problem with its path. */
export class ScriptValidationError extends Error {
  override name = "ScriptValidationError";
  readonly issues: ScriptIssue[];
  constructor(source: string, issues: ScriptIssue[], options?: { cause?: unknown }) {
    super(
      `invalid sim-llm script (${source}): ${issues.length} problem(s)\n${issues
        .map((i) => `  - ${i.path}: ${i.message}`)
        .join("\n")}`,
      options,
    );
    this.issues = issues;
  }
}

/** The script file could not be read or is not JSON. */
export class ScriptLoadError extends Error {
  override name = "ScriptLoadError";
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out === "" ? String(seg) : `.${String(seg)}`;
  }
  return out === "" ? "(root)" : out;
}

/**
 * Validates a parsed JSON value as a script and applies defaults.
 * @param source named in the error message (a file path, or "inline").
 * @throws ScriptValidationError listing every problem with its path.
 */
export function parseScript(value: unknown, source = "inline"): Script {
  const result = ScriptSchema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
  throw new ScriptValidationError(source, issues, { cause: result.error });
}

/**
 * Reads and validates a script JSON file.
 * @throws ScriptLoadError when the file cannot be read or is not valid JSON.
 * @throws ScriptValidationError listing every schema problem with its path.
 */
export async function loadScript(path: string): Promise<Script> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ScriptLoadError(`cannot read sim-llm script ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ScriptLoadError(`sim-llm script ${path} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parseScript(json, path);
}
