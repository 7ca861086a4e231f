/**
 * sim-llm CLI: `node services/sim-llm/src/main.ts --script <file> [--port N] [--host H] [--api-key K] [--verbose]`.
 * Env fallbacks: SIM_SCRIPT, SIM_PORT, SIM_HOST, SIM_API_KEY. Prints `sim-llm listening on <url>` to stdout
 * once listening; exits 0 on SIGTERM/SIGINT, 2 on bad arguments or a bad script, 1 when it cannot listen.
 */
import { parseArgs } from "node:util";
import { ScriptLoadError, ScriptValidationError } from "./script.ts";
import { startSimLlm } from "./server.ts";

const USAGE =
  "usage: node services/sim-llm/src/main.ts --script <file> [--port N] [--host H] [--api-key K] [--verbose]";

process.title = "longshot-sim-llm";

function fail(message: string, code: number): never {
  console.error(message);
  process.exit(code);
}

let values: ReturnType<typeof parse>["values"];
function parse() {
  return parseArgs({
    options: {
      script: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      "api-key": { type: "string" },
      verbose: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
}
try {
  values = parse().values;
} catch (err) {
  fail(`${(err as Error).message}\n${USAGE}`, 2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const scriptPath = values.script ?? process.env.SIM_SCRIPT;
if (!scriptPath) fail(`missing --script (or SIM_SCRIPT)\n${USAGE}`, 2);
const portText = values.port ?? process.env.SIM_PORT ?? "0";
const port = Number(portText);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid port ${JSON.stringify(portText)}`, 2);
const host = values.host ?? process.env.SIM_HOST ?? "127.0.0.1";
const apiKey = values["api-key"] ?? process.env.SIM_API_KEY;

let sim: Awaited<ReturnType<typeof startSimLlm>>;
try {
  sim = await startSimLlm({
    scriptPath,
    port,
    host,
    verbose: values.verbose,
    ...(apiKey ? { apiKey } : {}),
  });
} catch (err) {
  if (err instanceof ScriptLoadError || err instanceof ScriptValidationError) fail(err.message, 2);
  fail(`sim-llm failed to start: ${(err as Error).message}`, 1);
}

console.log(`sim-llm listening on ${sim.url}`);

let stopping = false;
function stop(signal: string): void {
  if (stopping) return;
  stopping = true;
  if (values.verbose) console.error(`sim-llm: ${signal}, shutting down`);
  sim.close().then(
    () => process.exit(0),
    (err: unknown) => fail(`sim-llm: error while closing: ${(err as Error).message}`, 1),
  );
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
