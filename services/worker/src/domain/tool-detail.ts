/** Longest tool-call detail a progress line carries, characters. */
export const TOOL_DETAIL_MAX_CHARS = 200;

/**
 * A one-line preview of a tool call's arguments for the attempt's transcript: the command of `bash`, the path of
 * `read` / `write` / `edit` / `ls`, the pattern (and path) of `grep` / `find`, else the arguments as JSON. Newlines
 * become spaces; at most {@link TOOL_DETAIL_MAX_CHARS} characters (cut with `…`); undefined when there is nothing
 * to show. Pure.
 */
export function toolCallDetail(toolName: string, args: unknown): string | undefined {
  const a = (typeof args === "object" && args !== null ? args : {}) as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === "string" && v.length > 0 ? v : undefined);
  let text: string | undefined;
  switch (toolName) {
    case "bash":
      text = str(a.command);
      break;
    case "read":
    case "write":
    case "edit":
    case "ls":
      text = str(a.path);
      break;
    case "grep":
    case "find":
      text = [str(a.pattern), str(a.path)].filter(Boolean).join(" in ") || undefined;
      break;
  }
  if (text === undefined && args !== undefined) {
    const json = JSON.stringify(args);
    text = json === undefined || json === "{}" ? undefined : json;
  }
  if (text === undefined) return undefined;
  const line = text.replace(/\s*\r?\n\s*/g, " ").trim();
  if (line.length === 0) return undefined;
  return line.length > TOOL_DETAIL_MAX_CHARS ? `${line.slice(0, TOOL_DETAIL_MAX_CHARS - 1)}…` : line;
}
