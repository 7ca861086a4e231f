import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { connectBus, type ReadyMessage } from "@longshot/bus";
import { createLogger } from "@longshot/log";
import { natsServerEnv, serviceEnv } from "./child-env.ts";
import {
  type NatsNodeSpec,
  type NatsNodes,
  type NatsUser,
  pdeathsigPrefix,
  startNatsNodes,
  stopChild,
} from "./nats-nodes.ts";
import type { ScrapeTarget } from "./observe.ts";
import {
  type ClusterRecord,
  type Credentials,
  liveCluster,
  readClusterRecord,
  reapStale,
  removeClusterRecord,
  stateLayout,
  storedNodeCount,
  writeClusterRecord,
  writeStoredNodeCount,
} from "./state.ts";
import { clusterUsers } from "./users.ts";

/** Repository root (this file is services/cli/src/cluster.ts). */
export const ROOT = new URL("../../../", import.meta.url).pathname;

/** Ports {@link freePort} handed out in this process: never handed out twice (the kernel may offer one again). */
const handedOut = new Set<number>();

/**
 * A free loopback TCP port (bound and released; the caller binds it right after), never one this process was
 * given before: a cluster takes many ports up front, before any of its processes binds them.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", () => {
        const { port } = srv.address() as { port: number };
        srv.close(() => resolve(port));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

/**
 * The services an embedded cluster runs, each as its own process `longshot-<service>`; `llm-gateway` runs in
 * front of them whenever a model endpoint is configured.
 */
export const CLUSTER_SERVICES = [
  "planner",
  "subplanner",
  "dispatcher",
  "merger",
  "reconciler",
  "monitor",
] as const;

/** Largest NATS message of an embedded cluster: 4 MiB like `nats.conf` (a run's state is one KV value). */
export const MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/** Thrown when the state dir already has a running cluster (its owner CLI is alive). */
export class ClusterRunningError extends Error {
  override readonly name = "ClusterRunningError";
  readonly record: ClusterRecord;
  constructor(stateDir: string, record: ClusterRecord) {
    super(`a cluster of ${stateDir} is already running (CLI pid ${record.ownerPid})`);
    this.record = record;
  }
}

/** Thrown when a service cannot start (it exits before it is ready), with the end of its log. */
export class ServiceStartError extends Error {
  override readonly name = "ServiceStartError";
}

export interface EmbeddedCluster {
  /** Client URLs of the nats-server nodes, comma-separated (no credentials: see {@link client}). */
  natsUrl: string;
  /** Connection options of the cluster's admin user (for the CLI and tests): `connect(cluster.client)`. */
  client: { servers: string[]; user?: string; pass?: string };
  /** Credentials of the `submitter` user (publish requests and cancellations, read events), when auth is on. */
  submitter?: Credentials;
  /** The LLM gateway's base URL (no `/v1`), when one runs. */
  gatewayUrl?: string;
  stateDir: string;
  logDir: string;
  /** pid per service (current incarnation). */
  pids(): Record<string, number | undefined>;
  /** Current pid of each nats-server node. */
  natsPids(): Array<number | undefined>;
  /** Restarts so far per service. */
  restarts(): Record<string, number>;
  /** Restarts so far of each nats-server node. */
  natsRestarts(): number[];
  /** Every `/metrics` endpoint of the cluster: each service's (`METRICS_PORT`) and the LLM gateway's. */
  metricsTargets(): ScrapeTarget[];
  /** Resolves with the error when a service gave up (died too often): the cluster cannot finish runs. */
  failed: Promise<Error>;
  /** SIGTERM every service (SIGKILL after 10 s), then the NATS nodes; removes `cluster.json`. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** State dir: NATS stores, service state (clones), logs, `cluster.json` (see `stateLayout`). */
  stateDir: string;
  /**
   * Configuration for the services (the caller's environment with `./.env` under it, plus overrides). It is laid
   * over `process.env`; each child gets only its allowed subset (`child-env.ts`).
   */
  env: Record<string, string>;
  /** Called with a line for the user (restarts). */
  notify?: (line: string) => void;
  /** nats-server nodes: 1 (default) or 3 (a cluster with routes, R3 streams and KV). */
  nodes?: number;
  /** Per-role NATS users with subject permissions (default true); false runs a server without users. */
  auth?: boolean;
  /** How long services may take to report ready, ms (default 60 s). */
  readyTimeoutMs?: number;
  /**
   * Instances of each horizontally scaled service ({@link SCALED_SERVICES}), default 1. Instance k ≥ 2 of `svc`
   * runs as `svc-k` with `LONGSHOT_INSTANCE=k` (its own working files), its own log and metrics port, and the
   * role's NATS user: the instances share the role's durable consumers and KV.
   */
  instances?: number;
}

/** The services that may run as several instances on one cluster (work shared through JetStream and KV). */
export const SCALED_SERVICES = ["planner", "subplanner", "dispatcher", "merger"] as const;

/** The service a process name runs: `dispatcher-2` → `dispatcher`. */
const serviceOf = (name: string) => name.replace(/-\d+$/, "");

/**
 * Issues a gateway token for a cluster service (`POST /admin/tokens`, role = the service, `anyRun`): its calls are
 * accounted to the run they name in `x-longshot-run-id` (else to run `cluster`). @throws when the gateway refuses.
 */
async function issueServiceToken(gatewayUrl: string, adminToken: string, service: string): Promise<string> {
  const res = await fetch(`${gatewayUrl}/admin/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ runId: "cluster", role: service, anyRun: true }),
  });
  if (res.status !== 201) throw new Error(`llm-gateway refused a token for ${service}: HTTP ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}

/**
 * Starts an embedded cluster that behaves like a service: `nodes` nats-server nodes on free loopback ports with
 * their stores under `<stateDir>/nats` (kept: runs, events and KV outlive the CLI), per-role users generated for
 * this cluster (each service gets only its own credentials, through its environment), every stream, consumer
 * and KV bucket created, then the LLM gateway (when a model endpoint is configured; the only process given
 * provider keys) and every service as a child process `longshot-<service>` logging to `<stateDir>/logs`.
 *
 * Supervision: a nats-server node that exits is restarted on the same port and store; a service that exits is
 * restarted after 1 s, at most 10 times (then {@link EmbeddedCluster.failed} resolves). Children die with the
 * CLI: each is started through `setpriv --pdeathsig` where available, services also watch their IPC channel,
 * and each runs in its own process group (a terminal's Ctrl-C reaches only the CLI, which stops them in order).
 * `cluster.json` records the pids, so a CLI that finds the record of a dead owner kills what it left first.
 * Resolves once every service reported ready.
 * @throws ClusterRunningError when the state dir's cluster is already running; ServiceStartError when a service
 *   exits before it is ready (a configuration error, isolation missing …) or is not ready in time.
 */
export async function startEmbeddedCluster(opts: ClusterOptions): Promise<EmbeddedCluster> {
  const layout = stateLayout(opts.stateDir);
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
  const running = await liveCluster(opts.stateDir);
  if (running) throw new ClusterRunningError(opts.stateDir, running);
  const stale = await readClusterRecord(opts.stateDir);
  if (stale) {
    const killed = await reapStale(opts.stateDir, stale);
    if (killed)
      opts.notify?.(`killed ${killed} process(es) a previous cluster of ${opts.stateDir} left running`);
    await removeClusterRecord(opts.stateDir);
  }
  await Promise.all([layout.logDir, layout.cwd].map((d) => mkdir(d, { recursive: true })));
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...opts.env })) if (v !== undefined) merged[k] = v;

  const storedNodes = await storedNodeCount(opts.stateDir);
  const nodeCount = opts.nodes ?? storedNodes ?? 1;
  if (storedNodes !== undefined && storedNodes !== nodeCount)
    throw new Error(
      `the store of ${opts.stateDir} belongs to a ${storedNodes}-node cluster: start it with --nodes ${storedNodes}, or use another LONGSHOT_STATE_DIR`,
    );
  await writeStoredNodeCount(opts.stateDir, nodeCount);
  const users = opts.auth === false ? undefined : clusterUsers();
  const natsUsers: NatsUser[] = users
    ? Object.values(users).map((u) => ({
        user: u.user,
        password: u.pass,
        ...(u.permissions ? { permissions: u.permissions } : {}),
      }))
    : [];
  const specs: NatsNodeSpec[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    specs.push({
      name: `n${i}`,
      port: await freePort(),
      storeDir: join(layout.natsDir, `n${i}`),
      ...(nodeCount > 1 ? { clusterPort: await freePort() } : {}),
      // The monitor reads /varz and /jsz here and exports them as gnatsd_varz_* and jetstream_* (#11).
      httpPort: await freePort(),
    });
  }
  // Every service serves /metrics and /healthz on a port fixed up front, so a restart keeps its address.
  const instances = Math.max(1, opts.instances ?? 1);
  /** Every service process of the cluster by name (`svc`, then `svc-2` … for scaled services). */
  const processNames: string[] = CLUSTER_SERVICES.flatMap((svc) =>
    (SCALED_SERVICES as readonly string[]).includes(svc)
      ? Array.from({ length: instances }, (_, i) => (i === 0 ? svc : `${svc}-${i + 1}`))
      : [svc],
  );
  const metricsPorts = new Map<string, number>();
  for (const name of processNames) metricsPorts.set(name, await freePort());
  const children = new Map<string, ChildProcess>();
  const restarts: Record<string, number> = {};
  let stopping = false;
  const pidsRecord = (): Record<string, number> => {
    const out: Record<string, number> = {};
    nats?.pids().forEach((p, i) => {
      if (p) out[`nats-${specs[i]!.name}`] = p;
    });
    for (const [svc, c] of children) if (c.pid) out[svc] = c.pid;
    return out;
  };
  let record: ClusterRecord | undefined;
  const saveRecord = () => {
    if (!record) return;
    record.pids = pidsRecord();
    void writeClusterRecord(opts.stateDir, record).catch(() => {});
  };
  let nats: NatsNodes | undefined;
  nats = await startNatsNodes({
    specs,
    users: natsUsers,
    maxPayloadBytes: MAX_PAYLOAD_BYTES,
    confDir: layout.confDir,
    logDir: layout.logDir,
    env: natsServerEnv(merged),
    ...(opts.notify ? { notify: opts.notify } : {}),
    onPids: saveRecord,
  });
  const natsUrl = nats.urls.join(",");
  const replicas = nodeCount >= 3 ? 3 : 1;
  const admin = users ? { user: users.admin.user, pass: users.admin.pass } : undefined;
  record = {
    ownerPid: process.pid,
    natsUrls: nats.urls,
    ...(admin ? { admin } : {}),
    ...(users ? { submitter: { user: users.submitter.user, pass: users.submitter.pass } } : {}),
    startedAt: new Date().toISOString(),
    pids: {},
  };
  saveRecord();

  const stopAll = async () => {
    stopping = true;
    await Promise.all([...children.values()].map((c) => stopChild(c, 10_000)));
    await nats?.stop();
    await removeClusterRecord(opts.stateDir);
  };

  try {
    // The cluster is "up" once its streams and consumers exist: a plain publish right after this resolves
    // is captured even before the services attach.
    const bus = await connectBus({
      servers: natsUrl,
      name: "longshot-cluster",
      log: createLogger({ service: "cluster", level: "silent" }),
      replicas,
      ...(admin ? admin : {}),
    });
    try {
      await ensureTopologyWhenReady(bus);
    } finally {
      await bus.close();
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  // The LLM gateway fronts the model endpoints whenever one is configured: it alone gets the provider keys;
  // services call it, and every sandbox gets its own task token from the dispatcher. It listens on a port
  // fixed up front, so a restarted gateway keeps its address.
  const gateway =
    merged.LLM_BASE_URL || merged.LLM_ENDPOINTS
      ? { port: await freePort(), adminToken: randomBytes(24).toString("hex") }
      : undefined;
  const gatewayUrl = gateway ? `http://127.0.0.1:${gateway.port}` : undefined;
  const serviceTokens = new Map<string, string>();

  /** What the cluster sets for process `name` (service `svc`) on top of its allowed configuration. */
  const extraEnv = (name: string): Record<string, string> => {
    const svc = serviceOf(name);
    const creds = users?.[svc as keyof typeof users];
    const extra: Record<string, string> = {
      NATS_URL: natsUrl,
      NATS_REPLICAS: String(replicas),
      LONGSHOT_STATE_DIR: opts.stateDir,
      // Children find the same Node first on PATH (workers run `node --test` etc.).
      PATH: `${join(process.execPath, "..")}:${merged.PATH ?? ""}`,
      ...(creds ? { NATS_USER: creds.user, NATS_PASSWORD: creds.pass } : {}),
    };
    const metricsPort = metricsPorts.get(name);
    if (metricsPort !== undefined) extra.METRICS_PORT = String(metricsPort);
    if (name !== svc) extra.LONGSHOT_INSTANCE = name.slice(svc.length + 1);
    if (svc === "monitor")
      extra.NATS_MONITOR_URL = specs.map((s) => `http://127.0.0.1:${s.httpPort}`).join(",");
    if (!gateway) return extra;
    if (svc === "llm-gateway") {
      return {
        ...extra,
        GATEWAY_HOST: "127.0.0.1",
        GATEWAY_PORT: String(gateway.port),
        GATEWAY_ADMIN_TOKEN: gateway.adminToken,
        GATEWAY_AUTH: "tokens",
      };
    }
    // Each service calls the gateway with its own token (kept in NATS KV by the gateway, so a restarted
    // gateway still knows it); sandboxes get per-task tokens from the dispatcher.
    extra.LLM_BASE_URL = `${gatewayUrl}/v1`;
    const token = serviceTokens.get(svc);
    if (token) extra.LLM_API_KEY = token;
    if (svc === "dispatcher")
      Object.assign(extra, { LLM_GATEWAY_ADMIN_URL: gatewayUrl, GATEWAY_ADMIN_TOKEN: gateway.adminToken });
    return extra;
  };

  let giveUp: (e: Error) => void = () => {};
  const failed = new Promise<Error>((r) => {
    giveUp = r;
  });
  const logFile = (svc: string) => join(layout.logDir, `${svc}.log`);

  /**
   * Starts process `svc` (a service, or an instance `service-k`); resolves when it reports ready, rejects when it
   * exits first. Restarts it when it dies later.
   */
  const launch = (svc: string): Promise<void> => {
    // The log file is the child's stdout and stderr: its lines go on when the CLI is gone.
    const fd = openSync(logFile(svc), "a");
    const [cmd, ...args] = [
      ...pdeathsigPrefix(),
      process.execPath,
      join(ROOT, "services", serviceOf(svc), "src", "main.ts"),
    ];
    const child = spawn(cmd!, args, {
      cwd: layout.cwd,
      env: serviceEnv(serviceOf(svc), merged, extraEnv(svc)),
      stdio: ["ignore", fd, fd, "ipc"],
      detached: true,
    });
    closeSync(fd);
    children.set(svc, child);
    saveRecord();
    const ready = new Promise<void>((resolve, reject) => {
      child.on("message", (m: ReadyMessage) => {
        if (m?.type === "ready") resolve();
      });
      child.once("exit", (code, signal) =>
        reject(new ServiceStartError(`${svc} exited before it was ready (${signal ?? `code ${code}`})`)),
      );
    });
    ready.catch(() => {});
    child.once("exit", (code, signal) => {
      if (stopping || children.get(svc) !== child) return;
      restarts[svc] = (restarts[svc] ?? 0) + 1;
      if (restarts[svc]! > 10) {
        const msg = `${svc} died (${signal ?? code}) too often; not restarting. See ${logFile(svc)}`;
        opts.notify?.(msg);
        giveUp(new Error(msg));
        return;
      }
      opts.notify?.(`${svc} exited (${signal ?? `code ${code}`}); restarting`);
      setTimeout(() => {
        if (!stopping) launch(svc).catch(() => {});
      }, 1000);
    });
    return ready;
  };

  /** Starts `svc` and waits until it is ready, with the end of its log when it cannot start. */
  const startService = async (svc: string) => {
    const timeoutMs = opts.readyTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        launch(svc),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new ServiceStartError(`${svc} was not ready within ${timeoutMs / 1000} s`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (e) {
      stopping = true;
      const tail = await logTail(logFile(svc), 15);
      throw new ServiceStartError(`${(e as Error).message}; the end of ${logFile(svc)}:\n${tail}`);
    } finally {
      clearTimeout(timer);
    }
  };

  try {
    if (gateway) {
      await startService("llm-gateway");
      for (const svc of CLUSTER_SERVICES) {
        serviceTokens.set(svc, await issueServiceToken(gatewayUrl!, gateway.adminToken, svc));
      }
    }
    await Promise.all(processNames.map((name) => startService(name)));
  } catch (err) {
    await stopAll();
    throw err;
  }

  return {
    natsUrl,
    client: { servers: nats.urls, ...(admin ? { user: admin.user, pass: admin.pass } : {}) },
    ...(users ? { submitter: { user: users.submitter.user, pass: users.submitter.pass } } : {}),
    ...(gatewayUrl ? { gatewayUrl } : {}),
    stateDir: opts.stateDir,
    logDir: layout.logDir,
    pids: () => Object.fromEntries([...children].map(([k, c]) => [k, c.pid])),
    natsPids: () => nats.pids(),
    restarts: () => ({ ...restarts }),
    natsRestarts: () => nats.restarts(),
    metricsTargets: () => [
      ...[...metricsPorts].map(([service, port]) => ({ service, url: `http://127.0.0.1:${port}` })),
      ...(gatewayUrl ? [{ service: "llm-gateway", url: gatewayUrl }] : []),
    ],
    failed,
    stop: stopAll,
  };
}

/**
 * Creates the topology, retrying while JetStream is still electing its leaders (a fresh 3-node cluster answers
 * "JetStream system temporarily unavailable" for a few seconds), at most 60 s.
 */
export async function ensureTopologyWhenReady(bus: Awaited<ReturnType<typeof connectBus>>): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await bus.ensureTopology();
      return;
    } catch (e) {
      const msg = (e as Error).message ?? "";
      const transient = /temporarily unavailable|no suitable peers|timeout|insufficient resources|503/i.test(
        msg,
      );
      if (!transient || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** The last `n` lines of a log file ("" when it cannot be read). */
export async function logTail(file: string, n: number): Promise<string> {
  const { readFile } = await import("node:fs/promises");
  try {
    return (await readFile(file, "utf8")).trimEnd().split("\n").slice(-n).join("\n");
  } catch {
    return "";
  }
}
