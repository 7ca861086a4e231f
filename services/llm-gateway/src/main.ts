/**
 * llm-gateway CLI: `node services/llm-gateway/src/main.ts`. Configuration from the environment (and `.env`), see
 * the README. Logs JSON lines to stdout (the first one, msg "llm-gateway listening", carries `url`).
 * Exit codes: 0 after SIGTERM/SIGINT (in-flight requests get up to 30 s), 2 on bad configuration, 1 when it
 * cannot listen.
 */
import { readEnv } from "@longshot/config";
import { ConfigError, gatewayOptionsFromEnv } from "./config.ts";
import { type Gateway, startGateway } from "./gateway.ts";

process.title = "longshot-llm-gateway";

let gateway: Gateway;
try {
  gateway = await startGateway(gatewayOptionsFromEnv(readEnv()));
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
  gateway.close(30_000).then(
    () => process.exit(0),
    () => process.exit(1),
  );
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
