/**
 * sim-llm CLI: `node services/sim-llm/src/main.ts --script <file> [--port N] [--host H] [--api-key K] [--verbose]
 * [--record <file>]`,
 * plus replica mode (`--replica` and the replica flags, see USAGE / README; the script is then optional).
 * Env fallbacks: SIM_SCRIPT, SIM_PORT, SIM_HOST, SIM_API_KEY. Prints `sim-llm listening on <url>` to stdout
 * once listening; exits 0 on SIGTERM/SIGINT, 2 on bad arguments or a bad script, 1 when it cannot listen.
 */
import { parseArgs } from "node:util";
import type { ReplicaOptions } from "./replica.ts";
import { ScriptLoadError, ScriptValidationError } from "./script.ts";
import { startSimLlm } from "./server.ts";

const USAGE = `usage: node services/sim-llm/src/main.ts --script <file> [--port N] [--host H] [--api-key K] [--verbose] [--record <file>]
  replica mode (SGLang stand-in; --script becomes optional, a synthetic reply is used without it):
  --replica [--name S] [--model ID] [--reply-tokens N] [--ttft-ms N] [--tps N] [--prefill-tps N]
  [--max-running N] [--max-queue N] [--cache-tokens N] [--cache-block-chars N] [--seed N]
  [--error-rate P] [--error-status S] [--rate-limit-rate P] [--stall-rate P] [--stall-ms N]
  [--drop-rate P] [--drop-after-chunks N] [--unhealthy]`;

/** Replica flags holding numbers, with their bounds and the option they set. */
const NUMERIC_FLAGS = {
  "reply-tokens": { min: 1, int: true },
  "ttft-ms": { min: 0, int: false },
  tps: { min: 0.001, int: false },
  "prefill-tps": { min: 0.001, int: false },
  "max-running": { min: 1, int: true },
  "max-queue": { min: 0, int: true },
  "cache-tokens": { min: 0, int: true },
  "cache-block-chars": { min: 4, int: true },
  seed: { min: 0, int: true },
  "error-rate": { min: 0, max: 1, int: false },
  "error-status": { min: 500, max: 599, int: true },
  "rate-limit-rate": { min: 0, max: 1, int: false },
  "stall-rate": { min: 0, max: 1, int: false },
  "stall-ms": { min: 0, int: true },
  "drop-rate": { min: 0, max: 1, int: false },
  "drop-after-chunks": { min: 0, int: true },
} as const satisfies Record<string, { min: number; max?: number; int: boolean }>;
type NumericFlag = keyof typeof NUMERIC_FLAGS;

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
      record: { type: "string" },
      verbose: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      replica: { type: "boolean", default: false },
      name: { type: "string" },
      model: { type: "string" },
      unhealthy: { type: "boolean", default: false },
      ...(Object.fromEntries(Object.keys(NUMERIC_FLAGS).map((k) => [k, { type: "string" }])) as Record<
        NumericFlag,
        { type: "string" }
      >),
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

const problems: string[] = [];
const n: Partial<Record<NumericFlag, number>> = {};
for (const [flag, rule] of Object.entries(NUMERIC_FLAGS) as [
  NumericFlag,
  (typeof NUMERIC_FLAGS)[NumericFlag],
][]) {
  const text = values[flag];
  if (text === undefined) continue;
  const v = Number(text);
  const max = "max" in rule ? rule.max : Number.POSITIVE_INFINITY;
  if (!Number.isFinite(v) || (rule.int && !Number.isInteger(v)) || v < rule.min || v > max) {
    problems.push(
      `--${flag} ${JSON.stringify(text)}: expected ${rule.int ? "an integer" : "a number"} in [${rule.min}, ${max}]`,
    );
  } else n[flag] = v;
}
if (problems.length > 0) fail(`${problems.join("\n")}\n${USAGE}`, 2);
const replicaMode =
  values.replica || values.unhealthy || values.name !== undefined || Object.keys(n).length > 0;
let replica: ReplicaOptions | undefined;
if (replicaMode) {
  const faults: NonNullable<ReplicaOptions["faults"]> = {};
  if (n["error-rate"] !== undefined) faults.errorRate = n["error-rate"];
  if (n["error-status"] !== undefined) faults.errorStatus = n["error-status"];
  if (n["rate-limit-rate"] !== undefined) faults.rateLimitRate = n["rate-limit-rate"];
  if (n["stall-rate"] !== undefined) faults.stallRate = n["stall-rate"];
  if (n["stall-ms"] !== undefined) faults.stallMs = n["stall-ms"];
  if (n["drop-rate"] !== undefined) faults.dropRate = n["drop-rate"];
  if (n["drop-after-chunks"] !== undefined) faults.dropAfterChunks = n["drop-after-chunks"];
  if (values.unhealthy) faults.unhealthy = true;
  replica = { faults };
  if (values.name !== undefined) replica.name = values.name;
  if (n["ttft-ms"] !== undefined) replica.ttftMs = n["ttft-ms"];
  if (n.tps !== undefined) replica.tokensPerSecond = n.tps;
  if (n["prefill-tps"] !== undefined) replica.prefillTokensPerSecond = n["prefill-tps"];
  if (n["max-running"] !== undefined) replica.maxRunningRequests = n["max-running"];
  if (n["max-queue"] !== undefined) replica.maxQueuedRequests = n["max-queue"];
  if (n["cache-tokens"] !== undefined) replica.cacheTokens = n["cache-tokens"];
  if (n["cache-block-chars"] !== undefined) replica.cacheBlockChars = n["cache-block-chars"];
  if (n.seed !== undefined) replica.seed = n.seed;
}

const scriptPath = values.script ?? process.env.SIM_SCRIPT;
if (!scriptPath && !replica) fail(`missing --script (or SIM_SCRIPT)\n${USAGE}`, 2);
const portText = values.port ?? process.env.SIM_PORT ?? "0";
const port = Number(portText);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid port ${JSON.stringify(portText)}`, 2);
const host = values.host ?? process.env.SIM_HOST ?? "127.0.0.1";
const apiKey = values["api-key"] ?? process.env.SIM_API_KEY;

let sim: Awaited<ReturnType<typeof startSimLlm>>;
try {
  sim = await startSimLlm({
    ...(scriptPath ? { scriptPath } : {}),
    ...(replica ? { replica } : {}),
    ...(values.model ? { model: values.model } : {}),
    ...(n["reply-tokens"] !== undefined ? { syntheticReplyTokens: n["reply-tokens"] } : {}),
    port,
    host,
    verbose: values.verbose,
    ...(apiKey ? { apiKey } : {}),
    ...(values.record ? { recordPath: values.record } : {}),
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
