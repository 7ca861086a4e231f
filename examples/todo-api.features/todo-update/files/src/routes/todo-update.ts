/** PATCH /todos/:id: rename a todo or mark it done / not done. */
import { requireUser } from "../auth.ts";
import { type Feature, HttpError, json } from "../http.ts";
import { optionalBoolean, optionalString, requireObject } from "../validate.ts";

/**
 * The feature: `PATCH /todos/:id` with `{ title?, done? }` (at least one) answers 200 `{ todo }`; 400 for
 * an empty patch or bad field types; 404 `not_found` for a missing or foreign todo; 401 without a token.
 */
export const todoUpdate: Feature = {
  name: "todo-update",
  routes: [
    {
      method: "PATCH",
      path: "/todos/:id",
      handler: (req, ctx) => {
        const user = requireUser(req, ctx);
        const body = requireObject(req.body);
        const title = optionalString(body, "title", { max: 200 });
        const done = optionalBoolean(body, "done");
        if (title === undefined && done === undefined) {
          throw new HttpError(400, "invalid_body", "give title, done or both");
        }
        const patch: { title?: string; done?: boolean } = {};
        if (title !== undefined) patch.title = title;
        if (done !== undefined) patch.done = done;
        const todo = ctx.todos.update(user.id, req.params.id ?? "", patch);
        if (!todo) throw new HttpError(404, "not_found", "no such todo");
        return json(200, { todo });
      },
    },
  ],
};
