/**
 * Security headers on every response, errors included: no MIME sniffing, no framing, no referrer, and
 * `cache-control: no-store` unless the route chose its own caching.
 */
import type { AppResponse, Feature } from "../http.ts";

/** The headers added to every response. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
};

/** Adds {@link SECURITY_HEADERS} and a default `cache-control: no-store` to a response. */
export function withSecurityHeaders(res: AppResponse): AppResponse {
  return { ...res, headers: { "cache-control": "no-store", ...res.headers, ...SECURITY_HEADERS } };
}

/** The feature: a response hook, no routes. */
export const securityHeaders: Feature = {
  name: "security-headers",
  onResponse: (res) => withSecurityHeaders(res),
};
