import { createHash } from "node:crypto";
import type { SweepCheck } from "@longshot/contracts";

/** ANSI escape sequences (colours), built from a string so the source holds no control character. */
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g");

/**
 * Normalizes check output so the same failure gives the same text on any commit and any run: drops ANSI
 * codes, durations, hex ids (shas), temp paths, line:column positions and digit runs.
 */
export function normalizeOutput(text: string): string {
  return text
    .replace(ANSI, "")
    .replace(/\/tmp\/[^\s/]+/g, "<tmp>")
    .replace(/\b[0-9a-f]{7,40}\b/gi, "<hex>")
    .replace(/\d+(\.\d+)?\s?(ms|s)\b/g, "<t>")
    .replace(/:\d+:\d+/g, ":<pos>")
    .replace(/\d+/g, "<n>")
    .replace(/[ \t]+/g, " ")
    .trim();
}

const FAILURE_LINE = /fail|error|✖|not ok|assert|expected|exception|cannot|unable|missing/i;

/**
 * The lines of a check's output that describe the failure (errors, failing tests, assertions), so that
 * passing tests added by later merges do not change the signature. All lines when none look like one.
 */
export function failureLines(normalized: string): string {
  const lines = normalized
    .split("\n")
    .filter((l) => FAILURE_LINE.test(l) && !/^\S*\s*(fail|errors?)\s*<n>$/i.test(l.trim()));
  return (lines.length ? lines : normalized.split("\n")).join("\n");
}

/**
 * The failure signature of a red sweep: a short hash of which checks failed and their normalized output
 * (plus conflicted files). Independent of the sha, so the same breakage keeps one signature while it lasts;
 * the dedup key of fix tasks (issue: "deduplicated by failure signature, not by a model-chosen id").
 */
export function failureSignature(checks: readonly SweepCheck[], conflictFiles: readonly string[]): string {
  const failing = checks
    .filter((c) => !c.ok)
    .map((c) => `${c.name}\n${failureLines(normalizeOutput(c.output))}`)
    .sort();
  const material = [...failing, ...[...conflictFiles].sort().map((f) => `conflict:${f}`)].join("\n---\n");
  return createHash("sha1").update(material).digest("hex").slice(0, 16);
}
