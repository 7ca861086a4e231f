/** GET /todos/:id: one of the signed-in user's todos. */
import { requireUser } from "../auth.ts";
import { type Feature, HttpError, json } from "../http.ts";

/**
 * The feature: `GET /todos/:id` answers 200 `{ todo }`; 404 `not_found` when the todo does not exist or
 * belongs to someone else (no existence leak); 401 without a valid token.
 */
export const todoRead: Feature = {
  name: "todo-read",
  routes: [
    {
      method: "GET",
      path: "/todos/:id",
      handler: (req, ctx) => {
        const user = requireUser(req, ctx);
        const todo = ctx.todos.get(user.id, req.params.id ?? "");
        if (!todo) throw new HttpError(404, "not_found", "no such todo");
        return json(200, { todo });
      },
    },
  ],
};
