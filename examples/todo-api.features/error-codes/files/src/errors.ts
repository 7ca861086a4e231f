/**
 * The catalogue of the API's error codes (SPEC.md), each with the one HTTP status it is sent with. Throw
 * errors through {@link apiError} so that a code never goes out with another status.
 */
import { HttpError } from "./http.ts";

/** Every error code of SPEC.md and its HTTP status. */
export const ERROR_STATUS = {
  invalid_json: 400,
  invalid_body: 400,
  invalid_field: 400,
  unauthorized: 401,
  invalid_credentials: 401,
  not_found: 404,
  method_not_allowed: 405,
  email_taken: 409,
  payload_too_large: 413,
  internal_error: 500,
} as const;

/** An error code of the API: a key of {@link ERROR_STATUS}. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** Every error code, in catalogue order. */
export const ERROR_CODES = Object.keys(ERROR_STATUS) as ErrorCode[];

/** Whether `code` is one of the API's error codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_STATUS, code);
}

/** An {@link HttpError} with `code`, its catalogued status and `message` (which starts with the field name for validation errors). */
export function apiError(code: ErrorCode, message: string): HttpError {
  return new HttpError(ERROR_STATUS[code], code, message);
}
