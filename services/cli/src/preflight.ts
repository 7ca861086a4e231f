import { findNatsServer } from "@longshot/bus";
import {
  ConfigError,
  type LongshotEnv,
  llmEndpoints,
  parseConfig,
  LongshotEnv as Schema,
} from "@longshot/config";
import { probeIsolation } from "@longshot/sandbox";

/** A problem that stops a run before anything starts: what is wrong and what to set. */
export class PreflightError extends Error {
  override readonly name = "PreflightError";
}

/** What to set when no model endpoint is configured (printed as is). */
export const NO_MODEL_HELP = [
  "no model endpoint configured. Set, in the environment or in ./.env of this directory:",
  "  LLM_BASE_URL=https://your-endpoint/v1   (any OpenAI-compatible chat-completions endpoint)",
  "  LLM_API_KEY=…                           (its key, if it needs one)",
  "  LLM_MODEL=glm-5                         (the model id it serves)",
  'or LLM_ENDPOINTS=\'[{"name":"a","endpoint":"http://host:30000/v1","apiKey":"…"}]\' for several replicas.',
  "`./longshot demo` runs without one (offline model).",
].join("\n");

/** Fetch with a deadline; resolves the Response or rejects with the network error. */
async function fetchWithin(url: string, init: RequestInit, ms: number): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(ms) });
}

/**
 * Checks one model endpoint within `timeoutMs`: `GET <base>/models` with the key. Unreachable (refused, DNS,
 * timeout) and a refused key (401/403) are problems; any other answer means something OpenAI-like listens.
 * Returns the problem, or undefined when the endpoint answers.
 */
export async function probeEndpoint(
  name: string,
  baseUrl: string,
  apiKey: string | undefined,
  timeoutMs: number,
): Promise<string | undefined> {
  const url = `${baseUrl.replace(/\/+$/, "")}/models`;
  try {
    const res = await fetchWithin(
      url,
      apiKey ? { headers: { authorization: `Bearer ${apiKey}` } } : {},
      timeoutMs,
    );
    await res.body?.cancel();
    if (res.status === 401 || res.status === 403)
      return `${name} (${baseUrl}) refused the key (HTTP ${res.status}): check ${name === "LLM_BASE_URL" ? "LLM_API_KEY" : "its apiKey"}`;
    return undefined;
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const why =
      err.name === "TimeoutError"
        ? `no answer within ${timeoutMs / 1000} s`
        : (err.cause?.code ?? err.cause?.message ?? err.message);
    return `cannot reach ${name} (${baseUrl}): ${why}`;
  }
}

/**
 * Everything an embedded cluster needs before it starts, checked in seconds: the configuration parses
 * (`env` = the environment over `./.env`), a model endpoint is configured and at least one answers, nats-server
 * is installed, and the sandbox isolation chosen by `SANDBOX_PROVIDER` works here (bubblewrap for `local`).
 * Returns the parsed configuration.
 * @throws PreflightError saying what is wrong and what to set.
 */
export async function preflight(
  env: Record<string, string>,
  opts: { timeoutMs?: number } = {},
): Promise<LongshotEnv> {
  let config: LongshotEnv;
  try {
    config = parseConfig(Schema, env);
  } catch (e) {
    if (e instanceof ConfigError) throw new PreflightError(e.message);
    throw e;
  }
  const endpoints = llmEndpoints(config);
  if (endpoints.length === 0) throw new PreflightError(NO_MODEL_HELP);
  const timeoutMs = opts.timeoutMs ?? 5000;
  const problems = await Promise.all(
    endpoints.map((e) =>
      probeEndpoint(
        config.LLM_ENDPOINTS ? `endpoint ${e.name}` : "LLM_BASE_URL",
        e.endpoint,
        e.apiKey,
        timeoutMs,
      ),
    ),
  );
  if (problems.every((p) => p !== undefined))
    throw new PreflightError(`no model endpoint answers:\n  - ${problems.join("\n  - ")}`);
  try {
    findNatsServer();
  } catch (e) {
    throw new PreflightError((e as Error).message);
  }
  if (config.SANDBOX_PROVIDER === "local") {
    const probe = await probeIsolation();
    if (!probe.bwrap)
      throw new PreflightError(
        `SANDBOX_PROVIDER=local isolates every agent with bubblewrap, which cannot run here: ${probe.bwrapProblem}. ` +
          "Install it (apt-get install bubblewrap; ./longshot does on first use), or choose SANDBOX_PROVIDER=modal.",
      );
  }
  return config;
}
