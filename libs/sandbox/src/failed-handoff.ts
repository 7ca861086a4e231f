/**
 * The summary of an attempt the caller aborted: `sandbox aborted by the dispatcher`, followed by the signal's
 * reason when the caller gave one (an Error other than the default AbortError, e.g. the monitor's stuck report),
 * so the planner's retry and the history say why.
 */
export function abortReason(reason: unknown): string {
  const base = "sandbox aborted by the dispatcher";
  if (!(reason instanceof Error) || reason.name === "AbortError" || !reason.message) return base;
  return `${base}: ${reason.message}`;
}
