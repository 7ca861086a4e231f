/** DELETE /todos/:id: remove one of the signed-in user's todos. */
import { requireUser } from "../auth.ts";
import { type Feature, HttpError, json } from "../http.ts";

/**
 * The feature: `DELETE /todos/:id` answers 204 with no body; 404 `not_found` for a missing or foreign todo
 * (so a second delete is 404); 401 without a valid token.
 */
export const todoDelete: Feature = {
  name: "todo-delete",
  routes: [
    {
      method: "DELETE",
      path: "/todos/:id",
      handler: (req, ctx) => {
        const user = requireUser(req, ctx);
        if (!ctx.todos.remove(user.id, req.params.id ?? "")) {
          throw new HttpError(404, "not_found", "no such todo");
        }
        return json(204);
      },
    },
  ],
};
