/** GET /auth/me: who the bearer token belongs to. */
import { publicUser, requireUser } from "../auth.ts";
import { type Feature, json } from "../http.ts";

/** The feature: `GET /auth/me` answers 200 `{ user }`, or 401 `unauthorized` without a valid token. */
export const currentUser: Feature = {
  name: "current-user",
  routes: [
    {
      method: "GET",
      path: "/auth/me",
      handler: (req, ctx) => json(200, { user: publicUser(requireUser(req, ctx)) }),
    },
  ],
};
