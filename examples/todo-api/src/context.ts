/**
 * The application context handed to every route handler: configuration, the clock and the stores.
 */
import { randomBytes } from "node:crypto";
import { createTodoStore, createUserStore, type TodoStore, type UserStore } from "./store.ts";

/** Options of `createApp` / {@link createContext}. Every field has a default. */
export interface AppOptions {
  /** HMAC key for auth tokens (default: 32 random bytes, so tokens die with the process). */
  secret?: string;
  /** Lifetime of auth tokens in ms (default 1 hour). */
  tokenTtlMs?: number;
  /** The clock (default: the system clock). */
  now?: () => Date;
}

/** What handlers get besides the request. */
export interface AppContext {
  secret: string;
  tokenTtlMs: number;
  now: () => Date;
  users: UserStore;
  todos: TodoStore;
}

/** Default token lifetime: 1 hour, in ms. */
export const DEFAULT_TOKEN_TTL_MS = 60 * 60 * 1000;

/** A fresh context with empty stores. */
export function createContext(options: AppOptions = {}): AppContext {
  const now = options.now ?? (() => new Date());
  return {
    secret: options.secret ?? randomBytes(32).toString("hex"),
    tokenTtlMs: options.tokenTtlMs ?? DEFAULT_TOKEN_TTL_MS,
    now,
    users: createUserStore(now),
    todos: createTodoStore(now),
  };
}
