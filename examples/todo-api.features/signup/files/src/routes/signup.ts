/** POST /auth/signup: create an account and sign it in. */
import { hashPassword, issueToken, publicUser } from "../auth.ts";
import { type Feature, HttpError, json } from "../http.ts";
import { requireEmail, requireObject, requirePassword } from "../validate.ts";

/**
 * The feature: `POST /auth/signup` with `{ email, password }` answers 201 `{ user, token }`; 400 for an
 * invalid email or a password outside 8-128 characters; 409 `email_taken` when the email is registered.
 */
export const signup: Feature = {
  name: "signup",
  routes: [
    {
      method: "POST",
      path: "/auth/signup",
      handler: async (req, ctx) => {
        const body = requireObject(req.body);
        const email = requireEmail(body);
        const password = requirePassword(body);
        if (ctx.users.byEmail(email)) {
          throw new HttpError(409, "email_taken", "this email is already registered");
        }
        const user = ctx.users.add(email, await hashPassword(password));
        // The await above lets a concurrent signup win the race; the store is the arbiter.
        if (!user) throw new HttpError(409, "email_taken", "this email is already registered");
        return json(201, { user: publicUser(user), token: issueToken(ctx, user.id) });
      },
    },
  ],
};
