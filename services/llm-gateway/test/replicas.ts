/**
 * Test helper (not a test file): sim-llm replicas as real child processes (`node services/sim-llm/src/main.ts
 * --replica …`), so a replica can really be killed. Provider keys go through the SIM_API_KEY env, not argv.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const SIM_MAIN = join(fileURLToPath(new URL("../../..", import.meta.url)), "services/sim-llm/src/main.ts");

/** A running sim-llm replica process. */
export interface TestReplica {
  name: string;
  /** OpenAI base URL (`…/v1`). */
  url: string;
  /** `http://127.0.0.1:PORT`. */
  origin: string;
  child: ChildProcess;
  /** Changes fault injection at run time (`POST /sim/faults`). */
  setFaults(faults: Record<string, unknown>): Promise<void>;
  /** A counter or gauge of its `/metrics` (e.g. `sglang:num_requests_total`). */
  metric(name: string): Promise<number>;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM, and wait for the exit (no-op when already gone). */
  stop(): Promise<void>;
}

/** Starts one replica with extra CLI flags; `apiKey` (provider key) is passed in the environment. */
export async function startReplica(
  name: string,
  flags: string[] = [],
  apiKey?: string,
): Promise<TestReplica> {
  const env = { ...process.env };
  delete env.SIM_API_KEY;
  if (apiKey) env.SIM_API_KEY = apiKey;
  const child = spawn(process.execPath, [SIM_MAIN, "--replica", "--name", name, ...flags], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  const stderr: string[] = [];
  child.stderr!.on("data", (d: Buffer) => stderr.push(d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once("line", (line) => {
      const m = /^sim-llm listening on (\S+)$/.exec(line);
      if (m) resolve(m[1]!);
      else reject(new Error(`unexpected first line from replica ${name}: ${line}`));
    });
    child.once("exit", (code) => reject(new Error(`replica ${name} exited (${code}): ${stderr.join("")}`)));
  });
  const origin = url.replace(/\/v1$/, "");
  const exited = once(child, "exit");
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    name,
    url,
    origin,
    child,
    async setFaults(faults) {
      const res = await fetch(`${origin}/sim/faults`, { method: "POST", body: JSON.stringify(faults) });
      if (!res.ok) throw new Error(`setFaults ${name}: ${res.status}`);
    },
    async metric(metric) {
      const text = await (await fetch(`${origin}/metrics`)).text();
      const m = new RegExp(`^${metric.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\{[^}]*\\} (\\S+)$`, "m").exec(
        text,
      );
      if (!m) throw new Error(`metric ${metric} not found`);
      return Number(m[1]);
    },
    async kill() {
      if (alive()) child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (alive()) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Starts `n` replicas named `${prefix}1..n` with the same flags. */
export function startReplicas(n: number, flags: string[] = [], prefix = "r"): Promise<TestReplica[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => startReplica(`${prefix}${i + 1}`, flags)));
}

/** Polls `check` (every 10 ms, up to `timeoutMs`) until it returns true. @throws when it never does. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Reads one sample of a gateway metric from Prometheus text (labels matched as a substring). */
export function sample(text: string, name: string, labels = ""): number {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith("{") || rest.startsWith(" "))) continue;
    if (labels && !rest.includes(labels)) continue;
    return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

const GATEWAY_MAIN = join(fileURLToPath(new URL("..", import.meta.url)), "src/main.ts");

/** The gateway as a real process (`src/main.ts`). */
export interface TestGatewayProcess {
  /** OpenAI base URL (`…/v1`). */
  url: string;
  child: ChildProcess;
  /** Every stdout line and stderr chunk so far. */
  output: string[];
  /** `fetch` on a path of the gateway's origin with the admin token. */
  admin(method: string, path: string, body?: unknown): Promise<Response>;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM, and wait for the exit. @returns the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `services/llm-gateway/src/main.ts` with `env` on top of the test's environment (minus any LLM_* of the
 * developer's shell) and waits for its "llm-gateway listening" line.
 */
export async function startGatewayProcess(
  env: NodeJS.ProcessEnv,
  adminToken?: string,
): Promise<TestGatewayProcess> {
  const full: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ["LLM_BASE_URL", "LLM_API_KEY", "LLM_ENDPOINTS", "NATS_URL"]) delete full[k];
  Object.assign(full, env);
  const child = spawn(process.execPath, [GATEWAY_MAIN], { env: full, stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  child.stderr!.on("data", (d: Buffer) => output.push(d.toString()));
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    lines.on("line", (line) => {
      output.push(line);
      try {
        const rec = JSON.parse(line) as { msg: string; url?: string };
        if (rec.msg === "llm-gateway listening") resolve(rec.url!);
      } catch {
        // not a log line
      }
    });
    child.once("exit", (code) => reject(new Error(`gateway exited ${code}: ${output.join("\n")}`)));
  });
  const exited = once(child, "exit");
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    url,
    child,
    output,
    admin: (method, path, body) =>
      fetch(url.replace(/\/v1$/, path), {
        method,
        headers: adminToken ? { authorization: `Bearer ${adminToken}` } : {},
        ...(body ? { body: JSON.stringify(body) } : {}),
      }),
    async kill() {
      if (alive()) child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (alive()) child.kill("SIGTERM");
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}
