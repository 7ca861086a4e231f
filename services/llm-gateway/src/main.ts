/**
 * llm-gateway CLI: `node services/llm-gateway/src/main.ts`. Configuration from the environment (and `.env`), see
 * the README. Logs JSON lines to stdout (the first one, msg "llm-gateway listening", carries `url`).
 * With `NATS_URL`, token grants and run usage are kept in NATS KV (`natsLedgerStore`).
 * Exit codes: 0 after SIGTERM/SIGINT (in-flight requests get up to 30 s), 2 on bad configuration, 1 when it
 * cannot listen or reach NATS.
 */
import { type Bus, connectBus, notifyReady, watchSupervisor } from "@longshot/bus";
import { readEnv } from "@longshot/config";
import { createLogger } from "@longshot/log";
import { ConfigError, gatewayOptionsFromEnv } from "./config.ts";
import { type Gateway, startGateway } from "./gateway.ts";
import { natsLedgerStore } from "./store.ts";

process.title = "longshot-llm-gateway";
// Under the CLI's embedded cluster: stop when the CLI dies, say when listening.
watchSupervisor();

let gateway: Gateway;
let bus: Bus | undefined;
try {
  const env = readEnv();
  const options = gatewayOptionsFromEnv(env);
  // With NATS, token grants and run usage live in KV: tokens survive a restart, budgets keep counting.
  const natsUrl = env.NATS_URL;
  if (natsUrl) {
    bus = await connectBus({
      servers: natsUrl,
      name: "longshot-llm-gateway",
      log: createLogger({
        service: "llm-gateway",
        level: options.logLevel ?? "info",
        secrets: [env.NATS_PASSWORD],
      }),
      replicas: Number(env.NATS_REPLICAS ?? 1) || 1,
      ...(env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASSWORD ?? "" } : {}),
    });
    options.store = await natsLedgerStore(bus);
  }
  gateway = await startGateway(options);
  notifyReady("llm-gateway");
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`llm-gateway: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`llm-gateway failed to start: ${(err as Error).message}\n`);
  process.exit(1);
}

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  gateway
    .close(30_000)
    .then(() => bus?.close())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    );
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
