/**
 * The catalogue of the API's error codes (SPEC.md), each with the one HTTP status it is sent with.
 */
import { HttpError } from "./http.ts";

/** Every error code of SPEC.md. */
export enum ErrorCode {
  InvalidJson = "invalid_json",
  InvalidBody = "invalid_body",
  InvalidField = "invalid_field",
  Unauthorized = "unauthorized",
  InvalidCredentials = "invalid_credentials",
  NotFound = "not_found",
  MethodNotAllowed = "method_not_allowed",
  EmailTaken = "email_taken",
  PayloadTooLarge = "payload_too_large",
  InternalError = "internal_error",
}

/** The HTTP status of each error code. */
export const ERROR_STATUS: Record<ErrorCode, number> = {
  [ErrorCode.InvalidJson]: 400,
  [ErrorCode.InvalidBody]: 400,
  [ErrorCode.InvalidField]: 400,
  [ErrorCode.Unauthorized]: 401,
  [ErrorCode.InvalidCredentials]: 401,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.MethodNotAllowed]: 405,
  [ErrorCode.EmailTaken]: 409,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.InternalError]: 500,
};

/** An {@link HttpError} with `code` and its catalogued status. */
export function apiError(code: ErrorCode, message: string): HttpError {
  return new HttpError(ERROR_STATUS[code], code, message);
}
