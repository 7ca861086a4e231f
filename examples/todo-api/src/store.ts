/**
 * In-memory stores for users and todos. Data lives as long as the process; ids are random UUIDs and
 * timestamps ISO-8601 strings from the injected clock.
 */
import { randomUUID } from "node:crypto";

/** A registered user. `email` is stored lower-cased; `passwordHash` comes from `hashPassword` (src/auth.ts). */
export interface User {
  id: string;
  email: string;
  passwordHash: string;
  createdAt: string;
}

/** A todo item. It belongs to exactly one user, `ownerId`. */
export interface Todo {
  id: string;
  ownerId: string;
  title: string;
  done: boolean;
  createdAt: string;
  updatedAt: string;
}

/** Users by id, with a unique case-insensitive email. */
export interface UserStore {
  /** Adds a user; undefined when the email is already taken. */
  add(email: string, passwordHash: string): User | undefined;
  byEmail(email: string): User | undefined;
  byId(id: string): User | undefined;
}

/** Todos, always accessed through their owner: another user's todo behaves as if it did not exist. */
export interface TodoStore {
  add(ownerId: string, title: string): Todo;
  /** The owner's todos, oldest first. */
  list(ownerId: string): Todo[];
  get(ownerId: string, id: string): Todo | undefined;
  /** Applies the given fields and bumps `updatedAt`; undefined when the todo does not exist. */
  update(ownerId: string, id: string, patch: { title?: string; done?: boolean }): Todo | undefined;
  /** True when a todo was removed. */
  remove(ownerId: string, id: string): boolean;
}

/** A user store that reads the time from `now`. */
export function createUserStore(now: () => Date): UserStore {
  const byId = new Map<string, User>();
  const idByEmail = new Map<string, string>();
  return {
    add(email, passwordHash) {
      const key = email.toLowerCase();
      if (idByEmail.has(key)) return undefined;
      const user: User = { id: randomUUID(), email: key, passwordHash, createdAt: now().toISOString() };
      byId.set(user.id, user);
      idByEmail.set(key, user.id);
      return user;
    },
    byEmail(email) {
      const id = idByEmail.get(email.toLowerCase());
      return id === undefined ? undefined : byId.get(id);
    },
    byId(id) {
      return byId.get(id);
    },
  };
}

/** A todo store that reads the time from `now`. */
export function createTodoStore(now: () => Date): TodoStore {
  const todos = new Map<string, Todo>();
  const owned = (ownerId: string, id: string) => {
    const todo = todos.get(id);
    return todo?.ownerId === ownerId ? todo : undefined;
  };
  return {
    add(ownerId, title) {
      const at = now().toISOString();
      const todo: Todo = { id: randomUUID(), ownerId, title, done: false, createdAt: at, updatedAt: at };
      todos.set(todo.id, todo);
      return { ...todo };
    },
    list(ownerId) {
      return [...todos.values()].filter((t) => t.ownerId === ownerId).map((t) => ({ ...t }));
    },
    get(ownerId, id) {
      const todo = owned(ownerId, id);
      return todo && { ...todo };
    },
    update(ownerId, id, patch) {
      const todo = owned(ownerId, id);
      if (!todo) return undefined;
      if (patch.title !== undefined) todo.title = patch.title;
      if (patch.done !== undefined) todo.done = patch.done;
      todo.updatedAt = now().toISOString();
      return { ...todo };
    },
    remove(ownerId, id) {
      return owned(ownerId, id) !== undefined && todos.delete(id);
    },
  };
}
