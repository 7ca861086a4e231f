/**
 * A local Modal API emulator that the real `modal@0.11.1` JS SDK talks to over real gRPC: the control plane
 * (`modal.client.ModalClient`) and the task command router (`modal.task_command_router.TaskCommandRouter`) are
 * served by one plaintext gRPC server on 127.0.0.1. Point the SDK at it with `MODAL_SERVER_URL=<url>` (or
 * `new ModalClient({ endpoint: url })`) and any non-empty `MODAL_TOKEN_ID` / `MODAL_TOKEN_SECRET`.
 *
 * Sandboxes run for real, in boxes (see runtime.ts and box.ts); images are metadata only. See
 * libs/testkit/README.md for what is and is not implemented.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { type BoxFactory, type BoxLimits, defaultBoxFactory } from "./box.ts";
import { authorizeControl, type ControlState, controlPlaneHandlers, describeImage } from "./control-plane.ts";
import { CONTROL_RPCS, CONTROL_SERVICE, GenericStatus, ROUTER_RPCS, ROUTER_SERVICE } from "./proto.ts";
import { authorizeRouter, routerHandlers } from "./router.ts";
import { addService } from "./rpc.ts";
import {
  type EmulatedSandbox,
  type ExitStatus,
  type ImageDescription,
  type NetworkPolicy,
  type SandboxResult,
  SandboxRuntime,
} from "./runtime.ts";

export type { Box, BoxExecOptions, BoxFactory, BoxLimits, BoxMount, BoxOptions } from "./box.ts";
export { FS_TOOLS_PATH } from "./fs-tools.ts";
export type { ExitStatus, ImageDescription, NetworkPolicy, SandboxResult } from "./runtime.ts";

/** Options of {@link startModalEmulator}. All optional. */
export interface ModalEmulatorOptions {
  /** Host directory for sandbox directories (default: a new temp dir, removed by `stop()`). */
  root?: string;
  /** The Longshot checkout mounted read-only at `/opt/longshot` in every sandbox (default: this repository). */
  checkoutDir?: string;
  /** Creates a sandbox's box (default: `createBox` of `@longshot/sandbox`). */
  createBox?: BoxFactory;
  /** `isolation` passed to the box factory (default `bwrap`). */
  isolation?: "bwrap" | "unsafe";
  /** When set, calls must carry exactly this `x-modal-token-id` / `x-modal-token-secret` (else any non-empty). */
  tokenId?: string;
  tokenSecret?: string;
  /** Reported by `EnvironmentGetOrCreate` (default `2024.10`). */
  imageBuilderVersion?: string;
  /** `pidsMax` of every box (default 1024). */
  pidsMax?: number;
}

/** A sandbox as the emulator's test hooks show it. Units: cores, MiB, seconds. */
export interface EmulatedSandboxView {
  sandboxId: string;
  taskId: string;
  /** Which create RPC made it: `v1` (`SandboxCreate`) or `v2` (`SandboxCreateV2`). */
  version: "v1" | "v2";
  appId: string;
  imageId: string;
  /** The image with its layers folded (registry tag, Dockerfile commands, `ENV`, `WORKDIR`). */
  image: ImageDescription;
  cpu?: number;
  cpuLimit?: number;
  memoryMiB?: number;
  memoryLimitMiB?: number;
  timeoutSecs: number;
  workdir?: string;
  /** `blocked` (blockNetwork: processes get loopback only), `open`, or `allowlist` (run as `blocked`). */
  network: NetworkPolicy;
  tags: Record<string, string>;
  /** Environment given at create (`env` of `sandboxes.create`). */
  env: Record<string, string>;
  /** Entrypoint argv (`command`), empty when none. */
  command: string[];
  name?: string;
  /** Unix seconds. */
  createdAt: number;
  /** Limits given to the sandbox's box: memory = `memoryLimitMiB` ?? `memoryMiB`, cpu = `cpuLimit` ?? `cpu`. */
  limits: BoxLimits;
  /** How the box enforces `limits`: `cgroup2`/`cgroup1`, `rlimit` (memory and processes only), or `none`. */
  limiter?: "cgroup2" | "cgroup1" | "rlimit" | "none";
  /** Host path of the sandbox's `/workspace` (gone once the sandbox finished). */
  workspaceDir: string;
  /** Host PIDs of the processes started by execs (and the entrypoint) that have not exited. */
  pids: number[];
  /** `running`, or how it finished. */
  status: "running" | "succeeded" | "failed" | "terminated" | "timeout";
  result?: SandboxResult;
  /** Every exec so far (fs-tools execs included, with the SDK's argv). */
  execs: { execId: string; argv: string[]; exit?: ExitStatus }[];
}

/** A running emulator. */
export interface ModalEmulator {
  /** `http://127.0.0.1:<port>`: `MODAL_SERVER_URL`, or `endpoint` of `new ModalClient(...)`. */
  url: string;
  /** The command router address handed to the SDK (`https://127.0.0.1:<port>`, dialled without TLS). */
  routerUrl: string;
  /** `MODAL_SERVER_URL`, `MODAL_TOKEN_ID`, `MODAL_TOKEN_SECRET` for the SDK's environment route. */
  env: Record<string, string>;
  /** Which box implementation runs sandboxes: `sandbox` (`createBox` of `@longshot/sandbox`) or `custom`. */
  boxKind: "sandbox" | "custom";
  /** Method names of every RPC received, in order (e.g. `SandboxCreateV2`, `TaskExecStart`). */
  readonly calls: readonly string[];
  /** How many times `method` was called. */
  callCount(method: string): number;
  /** Sandboxes still running. */
  sandboxes(): EmulatedSandboxView[];
  /** One sandbox in any state, or undefined. */
  sandbox(sandboxId: string): EmulatedSandboxView | undefined;
  /** Sandboxes that finished (terminated, timed out, or whose entrypoint exited). */
  terminatedCount(): number;
  /** Every image created, layers folded. */
  images(): ImageDescription[];
  /** Apps by name: `{ name, environment, appId }`. */
  apps(): { name: string; environment: string; appId: string }[];
  /** Terminates all sandboxes (waits for their processes and directories to go) and stops the server. */
  stop(): Promise<void>;
}

const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

function statusOf(sb: EmulatedSandbox): EmulatedSandboxView["status"] {
  switch (sb.result?.status) {
    case undefined:
      return "running";
    case GenericStatus.SUCCESS:
      return "succeeded";
    case GenericStatus.TIMEOUT:
      return "timeout";
    case GenericStatus.TERMINATED:
      return "terminated";
    default:
      return "failed";
  }
}

function view(sb: EmulatedSandbox): EmulatedSandboxView {
  const p = sb.params;
  const procs = [...sb.execs.values(), ...(sb.entry ? [sb.entry] : [])];
  return {
    sandboxId: sb.sandboxId,
    taskId: sb.taskId,
    version: sb.version,
    appId: p.appId,
    imageId: p.imageId,
    image: sb.image,
    cpu: p.cpu,
    cpuLimit: p.cpuLimit,
    memoryMiB: p.memoryMiB,
    memoryLimitMiB: p.memoryLimitMiB,
    timeoutSecs: p.timeoutSecs,
    workdir: p.workdir,
    network: p.network,
    tags: { ...sb.tags },
    env: { ...p.env },
    command: [...p.command],
    name: p.name,
    createdAt: sb.createdAt,
    limits: { ...sb.boxLimits },
    limiter: sb.limiter,
    workspaceDir: join(sb.dir, "workspace"),
    pids: procs.filter((e) => !e.exit && e.pid !== undefined).map((e) => e.pid as number),
    status: statusOf(sb),
    result: sb.result,
    execs: [...sb.execs.values()].map((e) => ({ execId: e.execId, argv: e.argv, exit: e.exit })),
  };
}

/**
 * Starts the emulator on a random port of 127.0.0.1. Rejects if the port cannot be bound. `stop()` it in
 * `afterAll`.
 */
export async function startModalEmulator(opts: ModalEmulatorOptions = {}): Promise<ModalEmulator> {
  const ownRoot = !opts.root;
  const root = opts.root ?? (await mkdtemp(join(tmpdir(), "longshot-modal-emulator-")));
  if (ownRoot) await chmod(root, 0o711); // traversable by boxes that run as an unprivileged uid
  const boxKind: ModalEmulator["boxKind"] = opts.createBox ? "custom" : "sandbox";
  const createBox = opts.createBox ?? defaultBoxFactory;
  const runtime = new SandboxRuntime({
    root,
    checkoutDir: opts.checkoutDir ?? REPO_ROOT,
    createBox,
    isolation: opts.isolation ?? "bwrap",
    pidsMax: opts.pidsMax ?? 1024,
  });
  const state: ControlState = { apps: new Map(), images: new Map(), secrets: new Map() };
  const calls: string[] = [];
  const log = (m: string) => calls.push(m);
  let port = 0;
  const controlOpts = {
    state,
    runtime,
    routerUrl: () => `https://127.0.0.1:${port}`,
    imageBuilderVersion: opts.imageBuilderVersion ?? "2024.10",
    tokenId: opts.tokenId,
    tokenSecret: opts.tokenSecret,
  };

  const server = new Server({ "grpc.max_receive_message_length": 100 * 1024 * 1024 });
  addService(server, CONTROL_SERVICE, CONTROL_RPCS, controlPlaneHandlers(controlOpts), log, (m, md) =>
    authorizeControl(controlOpts, m, md),
  );
  addService(server, ROUTER_SERVICE, ROUTER_RPCS, routerHandlers(runtime, state), log, authorizeRouter);
  port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    routerUrl: controlOpts.routerUrl(),
    env: {
      MODAL_SERVER_URL: url,
      MODAL_TOKEN_ID: opts.tokenId ?? "ak-emulator",
      MODAL_TOKEN_SECRET: opts.tokenSecret ?? "as-emulator",
    },
    boxKind,
    calls,
    callCount: (m) => calls.filter((c) => c === m).length,
    sandboxes: () => [...runtime.sandboxes.values()].filter((sb) => !sb.result).map(view),
    sandbox: (id) => {
      const sb = runtime.sandboxes.get(id);
      return sb ? view(sb) : undefined;
    },
    terminatedCount: () => [...runtime.sandboxes.values()].filter((sb) => sb.result).length,
    images: () => [...state.images.keys()].map((id) => describeImage(state, id)),
    apps: () =>
      [...state.apps.entries()].map(([key, appId]) => {
        const slash = key.indexOf("/");
        return { environment: key.slice(0, slash), name: key.slice(slash + 1), appId };
      }),
    stop: async () => {
      await runtime.stopAll();
      server.forceShutdown();
      if (ownRoot) await rm(root, { recursive: true, force: true });
    },
  };
}
