import { configSecrets, type LongshotEnv, loadConfig } from "@longshot/config";
import { createLogger, type Logger } from "@longshot/log";
import { type Bus, connectBus } from "./bus.ts";

/** What a service's `start` receives. */
export interface ServiceContext {
  config: LongshotEnv;
  log: Logger;
  bus: Bus;
}

/**
 * The composition root shared by every service process: sets the process title `longshot-<service>`,
 * loads and validates configuration (exit 2 listing every problem), connects to NATS, ensures the topology,
 * runs `start`, then waits for SIGINT/SIGTERM, calls the returned stop function and drains the connection.
 * Any startup failure logs `fatal` and exits 1.
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
  const main = async () => {
    const bus = await connectBus({ servers: config.NATS_URL, name: `longshot-${service}`, log });
    await bus.ensureTopology();
    const stop = await start({ config, log, bus });
    log.info({ nats: config.NATS_URL }, "started");
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    log.info("stopping");
    await stop();
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
