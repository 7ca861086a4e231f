/** POST /todos: add a todo for the signed-in user. */
import { requireUser } from "../auth.ts";
import { type Feature, json } from "../http.ts";
import { requireObject, requireString } from "../validate.ts";

/**
 * The feature: `POST /todos` with `{ title }` (trimmed, 1-200 characters) answers 201 `{ todo }` with
 * `done: false`; 400 for a bad title; 401 without a valid token.
 */
export const todoCreate: Feature = {
  name: "todo-create",
  routes: [
    {
      method: "POST",
      path: "/todos",
      handler: (req, ctx) => {
        const user = requireUser(req, ctx);
        const title = requireString(requireObject(req.body), "title", { max: 200 });
        return json(201, { todo: ctx.todos.add(user.id, title) });
      },
    },
  ],
};
