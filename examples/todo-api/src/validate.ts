/**
 * Input validation for request bodies and query strings. Every failure is an HttpError 400 whose message
 * names the field, with code `invalid_body` (not a JSON object) or `invalid_field`.
 */
import { HttpError } from "./http.ts";

const invalid = (field: string, why: string) => new HttpError(400, "invalid_field", `${field} ${why}`);

/** The body as a plain object; throws 400 `invalid_body` for anything else (missing, array, string...). */
export function requireObject(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError(400, "invalid_body", "the request body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

/** A string field, trimmed, of `min`..`max` characters (defaults 1..200). */
export function requireString(
  body: Record<string, unknown>,
  field: string,
  limits: { min?: number; max?: number; trim?: boolean } = {},
): string {
  const value = body[field];
  if (typeof value !== "string") throw invalid(field, "must be a string");
  const text = limits.trim === false ? value : value.trim();
  const min = limits.min ?? 1;
  const max = limits.max ?? 200;
  if (text.length < min || text.length > max)
    throw invalid(field, `must be ${min} to ${max} characters long`);
  return text;
}

/** Like {@link requireString}, but undefined when the field is absent. */
export function optionalString(
  body: Record<string, unknown>,
  field: string,
  limits: { min?: number; max?: number; trim?: boolean } = {},
): string | undefined {
  return body[field] === undefined ? undefined : requireString(body, field, limits);
}

/** A boolean field, or undefined when absent. */
export function optionalBoolean(body: Record<string, unknown>, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== "boolean") throw invalid(field, "must be true or false");
  return value;
}

/** An email address (one `@`, a dot in the domain, no spaces, ≤ 254 chars), lower-cased. */
export function requireEmail(body: Record<string, unknown>, field = "email"): string {
  const email = requireString(body, field, { max: 254 }).toLowerCase();
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) throw invalid(field, "must be an email address");
  return email;
}

/** A password: 8 to 128 characters, not trimmed. */
export function requirePassword(body: Record<string, unknown>, field = "password"): string {
  return requireString(body, field, { min: 8, max: 128, trim: false });
}
