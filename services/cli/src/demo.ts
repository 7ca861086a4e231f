import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cp, mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "./cluster.ts";
import { pdeathsigPrefix } from "./nats-nodes.ts";

const run = promisify(execFile);

/** The demo target template and its sim-llm script. */
export const DEMO_TEMPLATE = join(ROOT, "examples", "todo-api");
export const DEMO_SCRIPT = join(ROOT, "examples", "todo-api.sim.json");
/** The request from the original Longshot docs. */
export const DEMO_REQUEST = "Build a REST API with user authentication and todo CRUD according to SPEC.md";

/**
 * Copies the demo template into a new git repository `<tmp>/longshot-demo-<random>/todo-api` on `main`
 * (one initial commit; `receive.denyCurrentBranch=updateInstead` so merges pushed to it update its tree).
 * Returns the demo dir and the repository path.
 */
export async function prepareDemoRepo(): Promise<{ demoDir: string; repo: string }> {
  const demoDir = await mkdtemp(join(tmpdir(), "longshot-demo-"));
  const repo = join(demoDir, "todo-api");
  await cp(DEMO_TEMPLATE, repo, { recursive: true, filter: (src) => !src.includes("node_modules") });
  const git = (...args: string[]) =>
    run("git", ["-c", "user.name=Longshot Demo", "-c", "user.email=demo@longshot.local", ...args], {
      cwd: repo,
    });
  await git("init", "-q", "-b", "main");
  await git("config", "receive.denyCurrentBranch", "updateInstead");
  await git("add", "-A");
  await git("commit", "-q", "-m", "Initial skeleton");
  return { demoDir, repo };
}

/** A running sim-llm process. */
export interface SimLlmProcess {
  url: string;
  model: string;
  stop(): Promise<void>;
}

/**
 * Starts sim-llm (`services/sim-llm`) as its own process on a free port with `script`, requiring `apiKey`
 * (passed in the environment, never argv). Resolves once it prints its URL.
 */
export async function startSimLlmProcess(script: string, apiKey: string): Promise<SimLlmProcess> {
  const model = (JSON.parse(await readFile(script, "utf8")) as { model?: string }).model ?? "sim-1";
  // Through `setpriv --pdeathsig` where available: the model dies with the CLI, even a killed one.
  const [cmd, ...args] = [
    ...pdeathsigPrefix(),
    process.execPath,
    join(ROOT, "services/sim-llm/src/main.ts"),
    "--script",
    script,
    "--port",
    "0",
  ];
  const child: ChildProcess = spawn(cmd!, args, {
    env: { ...process.env, SIM_API_KEY: apiKey },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once("exit", (code) => reject(new Error(`sim-llm exited with ${code}: ${stderr}`)));
  });
  return {
    url,
    model,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}
