/**
 * The emulator's control plane: handlers of the `modal.client.ModalClient` RPCs the `modal@0.11.1` SDK calls
 * for apps, images and sandboxes (V1 and V2 backends). Request/response fields are those of api.proto; where a
 * rule comes from the SDK's expectations (dist/index.js 0.11.1), the handler says so.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Metadata } from "@grpc/grpc-js";
import { GenericStatus, NetworkAccessType, ObjectCreationType } from "./proto.ts";
import {
  alreadyExists,
  type Handlers,
  invalid,
  notFound,
  precondition,
  serverStream,
  unary,
  unauthenticated,
} from "./rpc.ts";
import {
  type EmulatedSandbox,
  foldImage,
  type ImageDescription,
  type ImageRecord,
  type NetworkPolicy,
  type SandboxParams,
  type SandboxRuntime,
} from "./runtime.ts";

type Msg = Record<string, unknown>;

/** Lowercase alphanumerics of length `n` (ids; `sb-` + 22 of these is a V1 sandbox id for the SDK). */
export function randomId(n: number): string {
  const abc = "0123456789abcdefghijklmnopqrstuvwxyz";
  return [...randomBytes(n)].map((b) => abc[b % abc.length]).join("");
}

/** An unsigned JWT (`alg: none`) whose payload carries `exp` (seconds) and `claims`; the SDK only reads `exp`. */
export function makeJwt(claims: Record<string, unknown>, ttlSecs = 3600): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "none", typ: "JWT" })}.${b64({ ...claims, exp: Math.floor(Date.now() / 1000) + ttlSecs })}.emulator`;
}

/** State the control plane keeps besides sandboxes. */
export interface ControlState {
  /** `${environment}/${name}` → app id. */
  apps: Map<string, string>;
  images: Map<string, ImageRecord>;
  /** Ephemeral secrets from `secrets.fromObject` (V1 sandboxes pass `env` this way): id → variables. */
  secrets: Map<string, Record<string, string>>;
}

/** Options of {@link controlPlaneHandlers}. */
export interface ControlPlaneOptions {
  state: ControlState;
  runtime: SandboxRuntime;
  /** URL handed out as the command router's address (`https://127.0.0.1:<port>`; dialled insecurely by the SDK). */
  routerUrl: () => string;
  /** Image builder version reported by `EnvironmentGetOrCreate`. */
  imageBuilderVersion: string;
  /** Token id/secret the SDK must send (`x-modal-token-id` / `x-modal-token-secret`); undefined = any non-empty. */
  tokenId?: string;
  tokenSecret?: string;
}

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const num = (v: unknown): number => (typeof v === "number" ? v : 0);
const msg = (v: unknown): Msg | undefined => (v && typeof v === "object" ? (v as Msg) : undefined);
const list = (v: unknown): Msg[] => (Array.isArray(v) ? (v as Msg[]) : []);

function tagsOf(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of list(v)) {
    const name = str(t.tagName);
    if (!name) throw invalid("tag names must not be empty");
    out[name] = str(t.tagValue);
  }
  return out;
}

const tagList = (tags: Record<string, string>): Msg[] =>
  Object.entries(tags).map(([tagName, tagValue]) => ({ tagName, tagValue }));

/**
 * Checks the credentials the SDK's auth middleware sends on every control-plane call: `x-modal-token-id` and
 * `x-modal-token-secret` (and `x-modal-auth-token` on every call but `AuthTokenGet`). Throws UNAUTHENTICATED.
 */
export function authorizeControl(opts: ControlPlaneOptions, method: string, md: Metadata): void {
  const id = str(md.get("x-modal-token-id")[0]);
  const secret = str(md.get("x-modal-token-secret")[0]);
  if (!id || !secret) throw unauthenticated("missing x-modal-token-id / x-modal-token-secret");
  if ((opts.tokenId && id !== opts.tokenId) || (opts.tokenSecret && secret !== opts.tokenSecret)) {
    throw unauthenticated("invalid token");
  }
  if (method !== "AuthTokenGet" && !md.get("x-modal-auth-token")[0])
    throw unauthenticated("missing auth token");
}

/** The image with its layers folded; NOT_FOUND for an unknown id. */
export function describeImage(state: ControlState, imageId: string): ImageDescription {
  const layers: ImageRecord[] = [];
  let id = imageId;
  while (id) {
    const rec = state.images.get(id);
    if (!rec) throw notFound(`Could not find image with ID ${id}`);
    layers.unshift(rec);
    id = rec.baseImageId;
  }
  return foldImage(layers);
}

/**
 * Normalizes a `Sandbox` definition (api.proto `message Sandbox`): `resources` (field 5: `milli_cpu` 3,
 * `memory_mb` 2, `*_max` 7/5), `timeout_secs` (7; 0 → 300 s, the SDK's default), `workdir` (8),
 * `network_access` (22; legacy `block_network` 11), `entrypoint_args` (1), `name` (30). `env` is resolved by the
 * caller (V1 secrets / V2 secret sources).
 */
/** The policy of a `NetworkAccess` message (type 1 OPEN, 2 BLOCKED, 3 ALLOWLIST; absent = open). */
export function networkPolicyOf(na: Msg | undefined, blockNetwork = false): NetworkPolicy {
  const type = num(na?.networkAccessType);
  if (blockNetwork || type === NetworkAccessType.BLOCKED) return "blocked";
  return type === NetworkAccessType.ALLOWLIST ? "allowlist" : "open";
}

function paramsOf(appId: string, def: Msg, env: Record<string, string>): SandboxParams {
  const res = msg(def.resources) ?? {};
  const na = msg(def.networkAccess);
  const network = networkPolicyOf(na, def.blockNetwork === true);
  const cores = (m: unknown) => (num(m) > 0 ? num(m) / 1000 : undefined);
  const mib = (m: unknown) => (num(m) > 0 ? num(m) : undefined);
  return {
    appId,
    imageId: str(def.imageId),
    command: (def.entrypointArgs as string[] | undefined) ?? [],
    cpu: cores(res.milliCpu),
    cpuLimit: cores(res.milliCpuMax),
    memoryMiB: mib(res.memoryMb),
    memoryLimitMiB: mib(res.memoryMbMax),
    timeoutSecs: num(def.timeoutSecs) || 300,
    workdir: str(def.workdir) || undefined,
    network,
    allowedCidrs: (na?.allowedCidrs as string[] | undefined) ?? [],
    allowedDomains: (na?.allowedDomains as string[] | undefined) ?? [],
    env,
    name: str(def.name) || undefined,
  };
}

/** Variables of `SecretSource`s (api.proto: `secret_id` 1 or inline `env` 2 as `StringMap.contents`). */
export function envOfSources(
  state: ControlState,
  sources: unknown,
  secretIds: unknown = [],
): Record<string, string> {
  const env: Record<string, string> = {};
  const fromSecret = (id: string) => {
    const vars = state.secrets.get(id);
    if (!vars) throw notFound(`Secret ${id} not found`);
    Object.assign(env, vars);
  };
  for (const id of (secretIds as string[]) ?? []) fromSecret(id);
  for (const s of list(sources)) {
    if (str(s.secretId)) fromSecret(str(s.secretId));
    const contents = msg(msg(s.env)?.contents);
    if (contents) Object.assign(env, contents);
  }
  return env;
}

function resultOf(sb: EmulatedSandbox): Msg | undefined {
  return sb.result ? { ...sb.result } : undefined;
}

/** Handlers of the control-plane RPCs listed in `CONTROL_RPCS` (proto.ts). */
export function controlPlaneHandlers(opts: ControlPlaneOptions): Handlers {
  const { state, runtime } = opts;

  const sandbox = (id: unknown): EmulatedSandbox => {
    const sb = runtime.sandboxes.get(str(id));
    if (!sb) throw notFound(`Sandbox ${str(id)} not found`);
    return sb;
  };

  const appExists = (appId: string) => [...state.apps.values()].includes(appId);

  async function createSandbox(version: "v1" | "v2", req: Msg): Promise<EmulatedSandbox> {
    const appId = str(req.appId);
    if (!appExists(appId)) throw notFound(`App ${appId} not found`);
    const def = msg(req.definition) ?? {};
    const env =
      version === "v2"
        ? envOfSources(state, req.secretSources, def.secretIds)
        : envOfSources(state, [], def.secretIds);
    Object.assign(env, msg(msg(def.environmentVariables)?.contents) ?? {});
    const params = paramsOf(appId, def, env);
    const image = describeImage(state, params.imageId);
    if (params.workdir && !params.workdir.startsWith("/")) throw invalid("workdir must be absolute");
    if (params.name) {
      for (const other of runtime.sandboxes.values()) {
        if (!other.result && other.params.appId === appId && other.params.name === params.name) {
          throw alreadyExists(`Sandbox with name '${params.name}' already exists in the app`);
        }
      }
    }
    // V1 ids are `sb-` + 22 alphanumerics (the SDK's isV1SandboxId); anything else is V2 to the SDK.
    const sandboxId = version === "v1" ? `sb-${randomId(22)}` : `sb-v2-${randomId(20)}`;
    const taskId = `ta-${randomId(22)}`;
    return runtime.create({
      sandboxId,
      taskId,
      version,
      params,
      image,
      jwt: makeJwt({ sandbox_id: sandboxId, task_id: taskId }),
      tags: tagsOf(req.tags),
    });
  }

  const getTaskId = unary(async (req) => {
    const sb = sandbox(req.sandboxId);
    // Scheduling is instant: a running sandbox always has its task. A finished one answers with `task_result`,
    // which the SDK turns into "Sandbox … has already finished".
    return sb.result ? { taskResult: resultOf(sb) } : { taskId: sb.taskId };
  });

  const wait = unary(async (req, ctx) => {
    const sb = sandbox(req.sandboxId);
    const timeoutMs = Math.min(Math.max(num(req.timeout), 0), 55) * 1000;
    if (!sb.result && timeoutMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        sb.finished,
        new Promise((r) => {
          timer = setTimeout(r, timeoutMs);
        }),
        new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true })),
      ]);
      clearTimeout(timer);
    }
    return { result: resultOf(sb), metadata: { appId: sb.params.appId, result: resultOf(sb) } };
  });

  const terminate = unary(async (req) => {
    const sb = sandbox(req.sandboxId);
    const existing = resultOf(sb);
    await sb.finish({ status: GenericStatus.TERMINATED, exitcode: 0, exception: "Sandbox terminated" });
    return existing ? { existingResult: existing } : {};
  });

  const tagsSet = unary(async (req) => {
    const sb = sandbox(req.sandboxId);
    sb.tags = tagsOf(req.tags);
    return {};
  });

  const tagsGet = unary(async (req) => ({ tags: tagList(sandbox(req.sandboxId).tags) }));

  const listFor = (versions: ("v1" | "v2")[]) =>
    unary(async (req) => {
      const want = tagsOf(req.tags);
      const appId = str(req.appId);
      const before = num(req.beforeTimestamp);
      const rows = [...runtime.sandboxes.values()]
        .filter((sb) => versions.includes(sb.version))
        .filter((sb) => req.includeFinished === true || !sb.result)
        .filter((sb) => !appId || sb.params.appId === appId)
        .filter((sb) => Object.entries(want).every(([k, v]) => sb.tags[k] === v))
        .filter((sb) => !before || sb.createdAt < before)
        .sort((a, b) => b.createdAt - a.createdAt)
        .slice(0, 100);
      return {
        sandboxes: rows.map((sb) => ({
          id: sb.sandboxId,
          createdAt: sb.createdAt,
          appId: sb.params.appId,
          tags: tagList(sb.tags),
          name: sb.params.name ?? "",
          imageId: sb.params.imageId,
          timeoutSecs: sb.params.timeoutSecs,
          taskInfo: {
            id: sb.taskId,
            sandboxId: sb.sandboxId,
            startedAt: sb.createdAt,
            finishedAt: sb.finishedAt ?? 0,
            result: resultOf(sb),
          },
        })),
      };
    });

  const routerAccess = (sb: EmulatedSandbox): Msg => {
    if (sb.result) throw precondition(`Sandbox ${sb.sandboxId} has finished`);
    return { jwt: sb.jwt, url: opts.routerUrl() };
  };

  return {
    AuthTokenGet: unary(async () => ({ token: makeJwt({ sub: "emulator" }) })),

    AppGetOrCreate: unary(async (req) => {
      const name = str(req.appName);
      if (!name) throw invalid("app name is required");
      const key = `${str(req.environmentName)}/${name}`;
      let appId = state.apps.get(key);
      if (!appId) {
        if (num(req.objectCreationType) !== ObjectCreationType.CREATE_IF_MISSING) {
          throw notFound(`App '${name}' not found`);
        }
        appId = `ap-${randomId(22)}`;
        state.apps.set(key, appId);
      }
      return { appId };
    }),

    EnvironmentGetOrCreate: unary(async (req) => ({
      environmentId: "en-emulator",
      metadata: {
        name: str(req.deploymentName) || "main",
        settings: { imageBuilderVersion: opts.imageBuilderVersion, webhookSuffix: "" },
      },
    })),

    SecretGetOrCreate: unary(async (req) => {
      // Only ephemeral secrets (`secrets.fromObject`, object_creation_type 5 EPHEMERAL) exist here.
      const envDict = msg(req.envDict) as Record<string, string> | undefined;
      if (num(req.objectCreationType) !== 5 || !envDict) {
        throw notFound(`Secret '${str(req.deploymentName)}' not found (the emulator has no named secrets)`);
      }
      const secretId = `st-${randomId(22)}`;
      state.secrets.set(secretId, { ...envDict });
      return { secretId };
    }),

    ImageGetOrCreate: unary(async (req) => {
      const image = msg(req.image) ?? {};
      const cmds = (image.dockerfileCommands as string[] | undefined) ?? [];
      const from = /^\s*FROM\s+(\S+)/i.exec(cmds[0] ?? "");
      if (!from) throw invalid("the first Dockerfile command must be FROM");
      const base = list(image.baseImages).find((b) => str(b.dockerTag) === from[1]);
      const baseImageId = base ? str(base.imageId) : "";
      if (baseImageId) describeImage(state, baseImageId);
      const registryTag = base ? "" : from[1]!;
      const commands = cmds.slice(1);
      // Same content → same id, like Modal's content-addressed images.
      const digest = createHash("sha256")
        .update(JSON.stringify([registryTag, baseImageId, commands]))
        .digest("hex");
      const imageId = `im-${digest.slice(0, 22)}`;
      if (!state.images.has(imageId)) {
        state.images.set(imageId, { imageId, registryTag, commands, baseImageId, appId: str(req.appId) });
      }
      return { imageId, result: { status: GenericStatus.SUCCESS } };
    }),

    ImageJoinStreaming: serverStream(async function* (req) {
      describeImage(state, str(req.imageId));
      yield { result: { status: GenericStatus.SUCCESS }, entryId: "1", eof: true };
    }),

    ImageFromId: unary(async (req) => ({ imageId: describeImage(state, str(req.imageId)).imageId })),

    SandboxCreate: unary(async (req) => {
      const sb = await createSandbox("v1", req);
      return { sandboxId: sb.sandboxId, metadata: { appId: sb.params.appId } };
    }),

    SandboxCreateV2: unary(async (req) => {
      const sb = await createSandbox("v2", req);
      return {
        sandboxId: sb.sandboxId,
        taskId: sb.taskId,
        metadata: { appId: sb.params.appId },
        commandRouterAccess: routerAccess(sb),
      };
    }),

    SandboxGetTaskId: getTaskId,
    SandboxGetTaskIdV2: getTaskId,
    SandboxGetCommandRouterAccess: unary(async (req) => routerAccess(sandbox(req.sandboxId))),
    TaskGetCommandRouterAccess: unary(async (req) => {
      const sb = runtime.byTask.get(str(req.taskId));
      if (!sb) throw notFound(`Task ${str(req.taskId)} not found`);
      return routerAccess(sb);
    }),
    SandboxWait: wait,
    SandboxWaitV2: wait,
    SandboxTerminate: terminate,
    SandboxTerminateV2: terminate,
    SandboxTagsSet: tagsSet,
    SandboxTagsSetV2: tagsSet,
    SandboxTagsGet: tagsGet,
    SandboxTagsGetV2: tagsGet,
    SandboxList: listFor(["v1"]),
    SandboxListV2: listFor(["v1", "v2"]),
  };
}
