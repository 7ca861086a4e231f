/** GET /todos: the signed-in user's todos. */
import { requireUser } from "../auth.ts";
import { type Feature, HttpError, json } from "../http.ts";

/**
 * The feature: `GET /todos` answers 200 `{ todos }` with the caller's todos, oldest first. `?done=true` or
 * `?done=false` filters; any other `done` value is 400 `invalid_field`. 401 without a valid token.
 */
export const todoList: Feature = {
  name: "todo-list",
  routes: [
    {
      method: "GET",
      path: "/todos",
      handler: (req, ctx) => {
        const user = requireUser(req, ctx);
        const done = req.query.get("done");
        if (done !== null && done !== "true" && done !== "false") {
          throw new HttpError(400, "invalid_field", "done must be true or false");
        }
        const todos = ctx.todos.list(user.id).filter((t) => done === null || t.done === (done === "true"));
        return json(200, { todos });
      },
    },
  ],
};
