import { configSecrets, type LongshotEnv, loadConfig } from "@longshot/config";
import { createLogger, type Logger } from "@longshot/log";
import { createServiceRegistry, type Registry, startMetricsServer } from "@longshot/metrics";
import { type Bus, connectBus } from "./bus.ts";
import { notifyReady, watchSupervisor } from "./supervision.ts";

/** What a service's `start` receives. */
export interface ServiceContext {
  config: LongshotEnv;
  log: Logger;
  bus: Bus;
  /**
   * This process's Prometheus registry (label `service` on every metric, Node's default metrics included), served
   * on `/metrics` at `METRICS_HOST:METRICS_PORT`: a service registers its own metrics on it.
   */
  metrics: Registry;
}

/**
 * The composition root shared by every service process: sets the process title `longshot-<service>`,
 * loads and validates configuration (exit 2 listing every problem), connects to NATS, ensures the topology,
 * serves `/metrics` and `/healthz` (healthy while connected to NATS) on `METRICS_HOST:METRICS_PORT` with the
 * registry `start` gets, runs `start`, then waits for SIGINT/SIGTERM, calls the returned stop function and drains the connection.
 * Any startup failure logs `fatal` and exits 1. Connects as `NATS_USER` when set; creates streams and buckets
 * with `NATS_REPLICAS` replicas. Under a supervisor with an IPC channel (the embedded cluster) it reports
 * ready once started and stops when the supervisor dies ({@link watchSupervisor}).
 */
export function runService(
  service: string,
  start: (ctx: ServiceContext) => Promise<() => Promise<void>>,
): void {
  process.title = `longshot-${service}`;
  let config: LongshotEnv;
  try {
    config = loadConfig();
  } catch (e) {
    console.error(`longshot-${service}: ${(e as Error).message}`);
    process.exit(2);
  }
  const log = createLogger({ service, level: config.LOG_LEVEL, secrets: configSecrets(config) });
  watchSupervisor();
  const main = async () => {
    const bus = await connectBus({
      servers: config.NATS_URL,
      name: `longshot-${service}`,
      log,
      replicas: config.NATS_REPLICAS,
      ...(config.NATS_USER ? { user: config.NATS_USER, pass: config.NATS_PASSWORD ?? "" } : {}),
    });
    await bus.ensureTopology();
    const metrics = createServiceRegistry(service);
    const http = await startMetricsServer({
      registry: metrics,
      host: config.METRICS_HOST,
      port: config.METRICS_PORT,
      health: natsHealth(bus),
    });
    const stop = await start({ config, log, bus, metrics });
    log.info({ nats: config.NATS_URL, metrics: `${http.url}/metrics` }, "started");
    notifyReady(service);
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    log.info("stopping");
    await stop();
    await http.close();
    await bus.close();
    log.flush();
  };
  main().then(
    () => process.exit(0),
    (err) => {
      log.fatal({ err }, "fatal");
      log.flush();
      process.exit(1);
    },
  );
}

/** `/healthz` of a service: healthy while its NATS connection is open and connected (not reconnecting). */
function natsHealth(bus: Bus): () => { ok: boolean; detail?: Record<string, unknown> } {
  let connected = true;
  void (async () => {
    for await (const s of bus.nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnecting") connected = false;
      else if (s.type === "reconnect") connected = true;
    }
  })();
  return () => {
    if (bus.nc.isClosed()) return { ok: false, detail: { nats: "closed" } };
    return connected ? { ok: true } : { ok: false, detail: { nats: "reconnecting" } };
  };
}
