/**
 * Tolerant extraction of a JSON value from model output: a fenced ```json block (the last one), else the
 * whole text, else the outermost balanced `{…}` or `[…]` (whichever opens first). Returns `{ ok: false, error }` instead of throwing.
 */
export function extractJson(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  const candidates: string[] = [];
  const fences = [...text.matchAll(/```(?:json|JSON)?\s*\n([\s\S]*?)```/g)];
  for (let i = fences.length - 1; i >= 0; i--) candidates.push(fences[i]![1]!);
  candidates.push(text.trim());
  // The outermost value is whichever bracket opens first: `[{"a":1}]` is an array, not its first object.
  const obj = outermost(text, "{", "}");
  const arr = outermost(text, "[", "]");
  const objFirst = text.indexOf("{") >= 0 && (text.indexOf("[") < 0 || text.indexOf("{") < text.indexOf("["));
  for (const c of objFirst ? [obj, arr] : [arr, obj]) if (c) candidates.push(c);
  let firstError = "no JSON found";
  for (const c of candidates) {
    try {
      return { ok: true, value: JSON.parse(c) };
    } catch (e) {
      if (firstError === "no JSON found") firstError = (e as Error).message;
    }
  }
  return { ok: false, error: firstError };
}

/** The substring from the first `open` to its balanced `close`, skipping string literals; undefined if none. */
function outermost(text: string, open: string, close: string): string | undefined {
  const start = text.indexOf(open);
  if (start < 0) return undefined;
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === open) depth++;
    else if (ch === close && --depth === 0) return text.slice(start, i + 1);
  }
  return undefined;
}
