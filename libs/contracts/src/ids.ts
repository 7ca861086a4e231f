import { z } from "zod";

/**
 * Identifiers used in subjects, KV keys and branch names. Restricted to characters that are valid
 * in a NATS subject token and a KV key (`[-_.a-zA-Z0-9]`, no dots so an id is exactly one token).
 */
export const Id = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$/, "must be 1-80 chars of letters, digits, '-' or '_'");

/** Run id: one per request. */
export const RunId = Id;
/** Task id: unique within the whole cluster (planners prefix them with a run-scoped counter). */
export const TaskId = Id;

/**
 * Turns arbitrary text (e.g. a model-chosen id or a task description) into an {@link Id}-safe slug.
 * Lowercase, non-alphanumerics collapsed to `-`, trimmed, at most `max` characters (default 40).
 */
export function slugify(text: string, max = 40): string {
  const slug = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, max)
    .replace(/-+$/g, "");
  return slug.length > 0 ? slug : "x";
}

/** A new random id with an optional prefix, e.g. `run-3f9c1a2b7d`. */
export function newId(prefix?: string): string {
  const rand = globalThis.crypto.randomUUID().replace(/-/g, "").slice(0, 12);
  return prefix ? `${prefix}-${rand}` : rand;
}
