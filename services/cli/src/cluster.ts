import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { connectBus, type NatsServerHandle, startNatsServer } from "@longshot/bus";
import { createLogger } from "@longshot/log";

/** Repository root (this file is services/cli/src/cluster.ts). */
export const ROOT = new URL("../../../", import.meta.url).pathname;

/** A free loopback TCP port (bound and released; the caller binds it right after). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The services an embedded cluster runs, each as its own process `longshot-<service>`; `llm-gateway` runs in
 * front of them whenever a model endpoint is configured.
 */
export const CLUSTER_SERVICES = ["planner", "subplanner", "dispatcher", "merger", "reconciler"] as const;

export interface EmbeddedCluster {
  natsUrl: string;
  /** The LLM gateway's base URL (no `/v1`), when one runs. */
  gatewayUrl?: string;
  stateDir: string;
  logDir: string;
  /** pid per service (current incarnation). */
  pids(): Record<string, number | undefined>;
  /** Restarts so far per service. */
  restarts(): Record<string, number>;
  /** SIGTERM every service (SIGKILL after 10 s), then the NATS server. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** State dir: NATS store, service state (clones), logs. */
  stateDir: string;
  /** Extra environment for every service (model endpoint, limits …). */
  env: Record<string, string>;
  /** Called with a line for the user (restarts). */
  notify?: (line: string) => void;
}

/**
 * Starts an embedded cluster: `nats-server -js` on a free loopback port with its store under `stateDir`,
 * then every service as a child process (`node services/<svc>/src/main.ts`) logging to
 * `<stateDir>/logs/<svc>.log`, after creating every stream, consumer and KV bucket. A service that dies is restarted after 1 s (like compose's
 * `restart: unless-stopped`), at most 10 times. Services need no readiness wait: durable consumers hold
 * messages until they attach.
 */
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

export async function startEmbeddedCluster(opts: ClusterOptions): Promise<EmbeddedCluster> {
  const logDir = join(opts.stateDir, "logs");
  await mkdir(logDir, { recursive: true });
  const nats: NatsServerHandle = await startNatsServer({
    storeDir: join(opts.stateDir, "nats"),
    keepStore: false,
    // A run's state (with the planner's conversation) is one KV value: the same 4 MiB as nats.conf, not 1 MiB.
    maxPayloadBytes: 4 * 1024 * 1024,
  });
  // The cluster is "up" once its streams and consumers exist: a plain publish right after this resolves
  // is captured even before the services attach.
  try {
    const bus = await connectBus({
      servers: nats.url,
      name: "longshot-cluster",
      log: createLogger({ service: "cluster", level: "warn" }),
    });
    await bus.ensureTopology();
    await bus.close();
  } catch (err) {
    await nats.stop();
    throw err;
  }
  // The LLM gateway fronts the model endpoints whenever one is configured: it alone gets the provider keys;
  // services call it, and every sandbox gets its own task token from the dispatcher. It listens on a port
  // fixed up front, so a restarted gateway keeps its address.
  const merged = { ...process.env, ...opts.env };
  const gateway =
    merged.LLM_BASE_URL || merged.LLM_ENDPOINTS
      ? { port: await freePort(), adminToken: randomBytes(24).toString("hex") }
      : undefined;
  const gatewayUrl = gateway ? `http://127.0.0.1:${gateway.port}` : undefined;
  let markReady: () => void = () => {};
  const gatewayReady = gateway
    ? new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("llm-gateway did not start within 30 s")), 30_000);
        markReady = () => {
          clearTimeout(timer);
          resolve();
        };
      })
    : Promise.resolve();
  const watchGateway = (child: ChildProcess) => {
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf = (buf + d.toString()).slice(-8192);
      if (buf.includes("llm-gateway listening")) markReady();
    });
  };
  /** The environment of one service: the provider's keys only for the gateway. */
  const serviceEnv = (svc: string): NodeJS.ProcessEnv => {
    if (!gateway) return { ...merged };
    if (svc === "llm-gateway") {
      return {
        ...merged,
        GATEWAY_HOST: "127.0.0.1",
        GATEWAY_PORT: String(gateway.port),
        GATEWAY_ADMIN_TOKEN: gateway.adminToken,
        GATEWAY_AUTH: "tokens",
      };
    }
    const env: NodeJS.ProcessEnv = { ...merged, LLM_BASE_URL: `${gatewayUrl}/v1` };
    delete env.LLM_API_KEY;
    delete env.LLM_ENDPOINTS;
    // Each service calls the gateway with its own token (kept in NATS KV by the gateway, so a restarted
    // gateway still knows it); sandboxes get per-task tokens from the dispatcher.
    const token = serviceTokens.get(svc);
    if (token) env.LLM_API_KEY = token;
    if (svc === "dispatcher")
      Object.assign(env, { LLM_GATEWAY_ADMIN_URL: gatewayUrl, GATEWAY_ADMIN_TOKEN: gateway.adminToken });
    return env;
  };
  const serviceTokens = new Map<string, string>();
  const children = new Map<string, ChildProcess>();
  const restarts: Record<string, number> = {};
  const logs = new Map<string, WriteStream>();
  let stopping = false;

  const launch = (svc: string) => {
    let log = logs.get(svc);
    if (!log) {
      log = createWriteStream(join(logDir, `${svc}.log`), { flags: "a" });
      logs.set(svc, log);
    }
    const child = spawn(process.execPath, [join(ROOT, "services", svc, "src", "main.ts")], {
      cwd: ROOT,
      env: {
        ...serviceEnv(svc),
        NATS_URL: nats.url,
        LONGSHOT_STATE_DIR: opts.stateDir,
        // Children find the same Node first on PATH (workers run `node --test` etc.).
        PATH: `${join(process.execPath, "..")}:${process.env.PATH ?? ""}`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (svc === "llm-gateway") watchGateway(child);
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    children.set(svc, child);
    child.once("exit", (code, signal) => {
      if (stopping) return;
      restarts[svc] = (restarts[svc] ?? 0) + 1;
      if (restarts[svc]! > 10) {
        opts.notify?.(
          `${svc} died (${signal ?? code}) too often; not restarting. See ${join(logDir, `${svc}.log`)}`,
        );
        return;
      }
      opts.notify?.(`${svc} exited (${signal ?? `code ${code}`}); restarting`);
      setTimeout(() => {
        if (!stopping) launch(svc);
      }, 1000);
    });
  };
  if (gateway) {
    launch("llm-gateway");
    await gatewayReady;
    for (const svc of CLUSTER_SERVICES) {
      serviceTokens.set(svc, await issueServiceToken(gatewayUrl!, gateway.adminToken, svc));
    }
  }
  for (const svc of CLUSTER_SERVICES) launch(svc);

  return {
    natsUrl: nats.url,
    ...(gatewayUrl ? { gatewayUrl } : {}),
    stateDir: opts.stateDir,
    logDir,
    pids: () => Object.fromEntries([...children].map(([k, c]) => [k, c.pid])),
    restarts: () => ({ ...restarts }),
    stop: async () => {
      stopping = true;
      await Promise.all(
        [...children.values()].map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
              c.once("exit", () => {
                clearTimeout(t);
                resolve();
              });
              c.kill("SIGTERM");
            }),
        ),
      );
      for (const l of logs.values()) l.end();
      await nats.stop();
    },
  };
}
