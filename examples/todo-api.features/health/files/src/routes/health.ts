/** GET /health: liveness for load balancers and monitors. No authentication. */
import { type Feature, json } from "../http.ts";

/** The feature: `GET /health` answers 200 `{ "status": "ok", "time": <ISO-8601> }`. */
export const health: Feature = {
  name: "health",
  routes: [
    {
      method: "GET",
      path: "/health",
      handler: (_req, ctx) => json(200, { status: "ok", time: ctx.now().toISOString() }),
    },
  ],
};
