/** An entry of the OpenAI model list (`GET /v1/models`). */
export interface ModelObject {
  id: string;
  object: "model";
  created: number;
  owned_by: string;
}

/**
 * What the upstreams say about models: `ids`, every model named in an upstream config, and `open`, whether some
 * upstream has no model list (it serves whatever it is asked).
 */
export interface ModelCatalog {
  ids: Set<string>;
  open: boolean;
}

/** The {@link ModelCatalog} of upstreams given their model lists (undefined = serves any model). */
export function modelCatalog(upstreams: Iterable<{ models: ReadonlySet<string> | undefined }>): ModelCatalog {
  const ids = new Set<string>();
  let open = false;
  for (const u of upstreams) {
    if (u.models === undefined) open = true;
    else for (const m of u.models) ids.add(m);
  }
  return { ids, open };
}

/** The model object the gateway answers for a configured model id. */
export function modelObject(id: string): ModelObject {
  return { id, object: "model", created: 0, owned_by: "longshot-llm-gateway" };
}

/**
 * The model list of `GET /v1/models`: the configured ids, then those of `upstreamList` (the body of an open
 * upstream's own `/models` answer, or undefined) that are not configured. An unparsable list adds nothing.
 */
export function modelList(configured: ReadonlySet<string>, upstreamList: Buffer | undefined): ModelObject[] {
  const data = [...configured].map(modelObject);
  if (upstreamList === undefined) return data;
  try {
    const more = (JSON.parse(upstreamList.toString("utf8")) as { data?: { id?: unknown }[] }).data ?? [];
    for (const m of more) {
      if (typeof m.id === "string" && !configured.has(m.id)) data.push(modelObject(m.id));
    }
  } catch {
    // an unparsable list adds nothing
  }
  return data;
}
