/**
 * Authentication primitives: scrypt password hashes, HMAC-signed bearer tokens and the request guard
 * {@link requireUser}. Only node:crypto.
 */
import { createHmac, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";
import type { AppContext } from "./context.ts";
import { type AppRequest, HttpError } from "./http.ts";
import type { User } from "./store.ts";

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>;
const KEY_BYTES = 32;

/** Hashes a password as `scrypt$<salt hex>$<key hex>` with a random 16-byte salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, KEY_BYTES);
  return `scrypt$${salt.toString("hex")}$${key.toString("hex")}`;
}

/** True when `password` matches a hash from {@link hashPassword} (constant-time compare). */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, saltHex, keyHex] = stored.split("$");
  if (scheme !== "scrypt" || saltHex === undefined || keyHex === undefined) return false;
  const expected = Buffer.from(keyHex, "hex");
  if (expected.length !== KEY_BYTES) return false;
  const key = await scryptAsync(password, Buffer.from(saltHex, "hex"), KEY_BYTES);
  return timingSafeEqual(key, expected);
}

const sign = (secret: string, payload: string) =>
  createHmac("sha256", secret).update(payload).digest("base64url");

/** A token for `userId`: `<base64url payload>.<base64url HMAC-SHA256>`, valid for `ctx.tokenTtlMs`. */
export function issueToken(ctx: AppContext, userId: string): string {
  const exp = ctx.now().getTime() + ctx.tokenTtlMs;
  const payload = Buffer.from(JSON.stringify({ sub: userId, exp })).toString("base64url");
  return `${payload}.${sign(ctx.secret, payload)}`;
}

/** The user id of a valid, unexpired token; undefined for anything else. */
export function verifyToken(ctx: AppContext, token: string): string | undefined {
  const [payload, mac] = token.split(".");
  if (!payload || !mac) return undefined;
  const expected = Buffer.from(sign(ctx.secret, payload));
  const given = Buffer.from(mac);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof claims !== "object" || claims === null) return undefined;
  const { sub, exp } = claims as { sub?: unknown; exp?: unknown };
  if (typeof sub !== "string" || typeof exp !== "number" || exp <= ctx.now().getTime()) return undefined;
  return sub;
}

/**
 * The user behind the request's `Authorization: Bearer <token>` header.
 * Throws HttpError 401 `unauthorized` when the header is missing, the token is invalid or expired, or the
 * user no longer exists.
 */
export function requireUser(req: AppRequest, ctx: AppContext): User {
  const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "");
  const userId = match?.[1] === undefined ? undefined : verifyToken(ctx, match[1]);
  const user = userId === undefined ? undefined : ctx.users.byId(userId);
  if (!user) throw new HttpError(401, "unauthorized", "a valid bearer token is required");
  return user;
}

/** The public view of a user (never the password hash). */
export function publicUser(user: User): { id: string; email: string; createdAt: string } {
  return { id: user.id, email: user.email, createdAt: user.createdAt };
}
