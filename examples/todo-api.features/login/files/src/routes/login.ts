/** POST /auth/login: exchange email and password for a token. */
import { issueToken, publicUser, verifyPassword } from "../auth.ts";
import { type Feature, HttpError, json } from "../http.ts";
import { requireObject, requireString } from "../validate.ts";

/**
 * The feature: `POST /auth/login` with `{ email, password }` answers 200 `{ user, token }`, or 401
 * `invalid_credentials` with the same message whether the email is unknown or the password wrong.
 */
export const login: Feature = {
  name: "login",
  routes: [
    {
      method: "POST",
      path: "/auth/login",
      handler: async (req, ctx) => {
        const body = requireObject(req.body);
        const email = requireString(body, "email", { max: 254 });
        const password = requireString(body, "password", { max: 128, trim: false });
        const user = ctx.users.byEmail(email);
        if (!user || !(await verifyPassword(password, user.passwordHash))) {
          throw new HttpError(401, "invalid_credentials", "email or password is incorrect");
        }
        return json(200, { user: publicUser(user), token: issueToken(ctx, user.id) });
      },
    },
  ],
};
