import type { ServerResponse } from "node:http";
import type { GatewayContext } from "../context.ts";
import { NO_UPSTREAM_ANSWER } from "../domain/answers.ts";
import { modelList, modelObject } from "../domain/models.ts";
import { sendAnswer, sendError, sendJson, UPSTREAM_HEADER } from "../http-util.ts";

/**
 * `GET /v1/models` and `GET /v1/models/{id}` (`path` without `/v1/`, e.g. `models/glm-5`), for an authenticated
 * caller: the models named in upstream configs, plus what an upstream without a model list answers (passed through
 * as-is when no upstream names its models). An unknown id is 404 `model_not_found`. Never rejects.
 */
export async function handleModels(ctx: GatewayContext, res: ServerResponse, path: string): Promise<void> {
  const { ids: configured, open } = ctx.upstreams.catalog();
  const id = path.startsWith("models/") ? decodeURIComponent(path.slice("models/".length)) : undefined;
  if (configured.size === 0) return passthroughGet(ctx, res, path);
  if (id !== undefined) {
    if (configured.has(id)) return sendJson(res, 200, modelObject(id));
    if (open) return passthroughGet(ctx, res, path);
    return sendError(
      res,
      404,
      "model_not_found",
      `model ${JSON.stringify(id)} is not served by this gateway`,
    );
  }
  let listed: Buffer | undefined;
  if (open) {
    const any = ctx.upstreams.candidates(Date.now(), new Set()).find((u) => u.models === undefined);
    const answer = any
      ? await any.get(any.pathOf("models"), true, ctx.settings.firstByteTimeoutMs)
      : undefined;
    if (answer && answer.status === 200) listed = answer.body;
  }
  sendJson(res, 200, { object: "list", data: modelList(configured, listed) });
}

/**
 * GET passthrough of an OpenAI `path` (`models…`): tries each eligible upstream once, relaying the first answer
 * below 500; 503 `no_upstream_available` when none gave one.
 */
async function passthroughGet(ctx: GatewayContext, res: ServerResponse, path: string): Promise<void> {
  for (const u of ctx.upstreams.candidates(Date.now(), new Set())) {
    const result = await u.get(u.pathOf(path), true, ctx.settings.firstByteTimeoutMs);
    if (result === undefined || result.status >= 500) continue;
    res.writeHead(result.status, {
      ...result.headers,
      "content-length": result.body.length,
      [UPSTREAM_HEADER]: u.name,
    });
    res.end(result.body);
    return;
  }
  sendAnswer(res, NO_UPSTREAM_ANSWER);
}
