/**
 * The composition root: every feature of the API is registered here, and {@link createApp} turns them into
 * an in-process app (src/server.ts serves it over HTTP, src/testing.ts calls it from tests).
 *
 * Each feature owns ONE section below, from `// #region <feature>` to `// #endregion <feature>`. A feature
 * adds its import and its `features.push(...)` between its own two markers, each separated by a blank line,
 * and never touches another section. Sections are kept apart so that branches which register different
 * features merge (and rebase) cleanly. See AGENTS.md.
 */
import { type AppContext, type AppOptions, createContext } from "./context.ts";
import { type AppResponse, createHandler, type Feature, type RawRequest } from "./http.ts";

/** The registered features, in section order. */
const features: Feature[] = [];

// #region security-headers: security headers on every response
// #endregion security-headers

// #region health: GET /health
// #endregion health

// #region signup: POST /auth/signup
// #endregion signup

// #region login: POST /auth/login
// #endregion login

// #region current-user: GET /auth/me
// #endregion current-user

// #region todo-create: POST /todos
// #endregion todo-create

// #region todo-list: GET /todos
// #endregion todo-list

// #region todo-read: GET /todos/:id
// #endregion todo-read

// #region todo-update: PATCH /todos/:id
// #endregion todo-update

// #region todo-delete: DELETE /todos/:id
// #endregion todo-delete

/** The application: its context (stores, clock, secret) and its request handler. */
export interface App {
  context: AppContext;
  handle(req: RawRequest): Promise<AppResponse>;
}

/** An app with fresh in-memory stores. */
export function createApp(options: AppOptions = {}): App {
  const context = createContext(options);
  return { context, handle: createHandler([...features], context) };
}

/** The names of the registered features, in order. */
export function featureNames(): string[] {
  return features.map((f) => f.name);
}
