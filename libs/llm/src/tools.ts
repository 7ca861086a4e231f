/**
 * Function calling (OpenAI `tools`): what a caller hands {@link ChatClient.completeJson} so the model can look
 * things up before it answers, and the pure limits of a tool exchange.
 */

/** One tool as offered to the model (OpenAI chat-completions `tools[]` entry; `parameters` is a JSON Schema). */
export interface ToolDefinition {
  type: "function";
  function: { name: string; description: string; parameters: Record<string, unknown> };
}

/**
 * Tools a model may call. `run` gets the tool's name and its arguments as the model sent them (a JSON text, not
 * yet validated: the model is untrusted) and resolves with the text the model sees as the result — an error is a
 * result too (`error: …`), so `run` should not throw; if it does, the message becomes the result.
 */
export interface ToolSet {
  definitions: readonly ToolDefinition[];
  run(name: string, argsJson: string): Promise<string>;
}

/** Tool use of one {@link ChatClient.completeJson} call. */
export interface ToolOptions {
  tools: ToolSet;
  /**
   * Most model replies with tool calls that are answered (rounds); 0 offers no tools. Once used up, the model is
   * asked once more with `tool_choice: "none"` and must answer.
   */
  maxRounds: number;
  /** Most tool calls run per reply; further calls of the same reply get an error result. Default 8. */
  maxCallsPerRound?: number;
  /** Longest result of one call, characters (cut with a note beyond). Default 16384. */
  maxResultChars?: number;
  /**
   * Characters of tool results over the whole call: once reached, further calls get an error result asking for
   * the answer (keeps the prompt bounded). Default 65536 (≈ 16k tokens).
   */
  maxTotalResultChars?: number;
}

/** Defaults of {@link ToolOptions}. */
export const TOOL_DEFAULTS = {
  maxCallsPerRound: 8,
  maxResultChars: 16_384,
  maxTotalResultChars: 65_536,
} as const;

/**
 * `text` cut to at most `maxChars` characters (at the last line break before the limit when there is one), with a
 * line saying so and `hint` (how to ask for less) appended; `text` itself when it fits. The note is not counted in
 * `maxChars`.
 */
export function capText(text: string, maxChars: number, hint = ""): string {
  if (text.length <= maxChars) return text;
  const cut = text.slice(0, maxChars);
  const nl = cut.lastIndexOf("\n");
  const kept = nl > maxChars / 2 ? cut.slice(0, nl + 1) : cut;
  return `${kept}${kept.endsWith("\n") ? "" : "\n"}[output cut at ${kept.length} of ${text.length} characters${hint ? `; ${hint}` : ""}]`;
}
