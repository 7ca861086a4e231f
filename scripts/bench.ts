/**
 * `pnpm bench [suite] [args]`: runs one benchmark suite as its own process, output straight through.
 *   gateway [latency|routing|cpu]   the LLM gateway (services/llm-gateway/bench/run.ts); also `pnpm bench latency` …
 *   sandbox                         what isolation adds to starting a sandbox (libs/sandbox/bench/start.ts)
 *   merge-queue                     landed/h without, with serial and with speculative verification (services/merger/bench)
 * Without a suite: the gateway suite (as before there were several).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..");
const SUITES: Record<string, string> = {
  gateway: "services/llm-gateway/bench/run.ts",
  sandbox: "libs/sandbox/bench/start.ts",
  "merge-queue": "services/merger/bench/merge-queue.ts",
  "control-plane": "services/cli/bench/control-plane.ts",
};
const GATEWAY_PARTS = ["latency", "routing", "cpu", "all"];

const [first, ...rest] = process.argv.slice(2);
let file: string;
let args: string[];
if (first === undefined) [file, args] = [SUITES.gateway!, []];
else if (SUITES[first]) [file, args] = [SUITES[first]!, rest];
else if (GATEWAY_PARTS.includes(first)) [file, args] = [SUITES.gateway!, [first, ...rest]];
else {
  console.error(
    `unknown benchmark ${first}: use ${Object.keys(SUITES).join(", ")} (gateway: ${GATEWAY_PARTS.join(", ")})`,
  );
  process.exit(2);
}
const child = spawn(process.execPath, [join(ROOT, file), ...args], { stdio: "inherit" });
child.once("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
