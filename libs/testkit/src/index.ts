import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { startNatsServer } from "@longshot/bus";

export {
  type EmulatedSandboxView,
  type ModalEmulator,
  type ModalEmulatorOptions,
  startModalEmulator,
} from "./modal-emulator/index.ts";
export { type PromSample, parsePrometheusText, promValue } from "./prometheus.ts";

const run = promisify(execFile);

/** A NATS server for one test file: `url` to connect to, `stop()` in `afterAll`. */
export interface TestNats {
  url: string;
  kind: "container" | "process";
  stop(): Promise<void>;
}

/** True when a Docker engine answers (testcontainers' runtime probe, bounded to 5 s). */
export async function dockerAvailable(): Promise<boolean> {
  if (process.env.LONGSHOT_TEST_NO_DOCKER === "1") return false;
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    return await Promise.race([
      getContainerRuntimeClient().then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
    ]);
  } catch {
    return false;
  }
}

/**
 * Starts a JetStream-enabled NATS server for a test file: a testcontainers `nats` container when a Docker
 * engine is available, otherwise a locally spawned `nats-server` on a random port with a temp store.
 */
export async function startTestNats(): Promise<TestNats> {
  if (await dockerAvailable()) {
    const { NatsContainer } = await import("@testcontainers/nats");
    const c = await new NatsContainer(process.env.LONGSHOT_TEST_NATS_IMAGE ?? "nats:2.11")
      .withJetStream()
      .start();
    const o = c.getConnectionOptions() as { servers: string; user: string; pass: string };
    return {
      url: `nats://${o.user}:${o.pass}@${o.servers}`,
      kind: "container",
      stop: async () => void (await c.stop()),
    };
  }
  const s = await startNatsServer();
  return { url: s.url, kind: "process", stop: s.stop };
}

/** A temp directory removed by `cleanup()`. */
export async function tempDir(
  prefix = "longshot-test-",
): Promise<{ path: string; cleanup(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Runs git in `cwd` with a fixed test identity; returns trimmed stdout. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run("git", ["-c", "user.name=Test", "-c", "user.email=test@localhost", ...args], {
    cwd,
  });
  return stdout.trim();
}

/**
 * Creates a non-bare git repository at `dir` on branch `main` with `files` committed, configured with
 * `receive.denyCurrentBranch=updateInstead` so clones can push `main` into it. Returns the head sha.
 */
export async function makeRepo(dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  await git(dir, "init", "-q", "-b", "main");
  await git(dir, "config", "receive.denyCurrentBranch", "updateInstead");
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  await git(dir, "add", "-A");
  await git(dir, "commit", "-q", "-m", "initial");
  return git(dir, "rev-parse", "HEAD");
}

/**
 * Resolves when `predicate` returns truthy (polled every `intervalMs`), rejects after `timeoutMs` with an error
 * that ends with what `explain` says (e.g. the last screen and the logs), when given.
 * For conditions with no event to await (e.g. a file appearing); prefer awaiting events.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  timeoutMs = 30_000,
  intervalMs = 50,
  explain?: () => string | Promise<string>,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) {
      const why = explain
        ? `\n${await Promise.resolve()
            .then(explain)
            .catch((err: unknown) => String(err))}`
        : "";
      throw new Error(`condition not met within ${timeoutMs} ms${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A sim-llm process started by {@link startSimLlm}. */
export interface SimLlmProcess {
  /** OpenAI-compatible base URL ending in `/v1`. */
  url: string;
  child: import("node:child_process").ChildProcess;
  /** SIGTERMs it and waits for its exit. */
  stop(): Promise<void>;
}

const SIM_MAIN = join(import.meta.dirname, "../../../services/sim-llm/src/main.ts");

/**
 * Starts `services/sim-llm` as a real process on a free port with `args` (e.g. `["--script", path,
 * "--api-key", key]`) and resolves when it prints `sim-llm listening on <url>`. Rejects if it exits first.
 */
export async function startSimLlm(args: string[]): Promise<SimLlmProcess> {
  const { spawn } = await import("node:child_process");
  const { createInterface } = await import("node:readline");
  const child = spawn(process.execPath, [SIM_MAIN, "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on("line", (line) => {
      const m = /sim-llm listening on (\S+)/.exec(line);
      if (m?.[1]) resolve(m[1]);
    });
    child.once("exit", (code) => reject(new Error(`sim-llm exited with ${code}`)));
  });
  return {
    url,
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * Pids of live host processes whose command line contains `marker` (read from /proc; zombies excluded), for
 * tests proving that nothing a sandbox started survives it.
 */
export async function processesWith(marker: string): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmd = (await readFile(`/proc/${entry}/cmdline`, "utf8")).replace(/\0/g, " ");
      if (!cmd.includes(marker)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z") continue;
      out.push(Number(entry));
    } catch {
      // exited while scanning
    }
  }
  return out;
}

/**
 * What a failed cluster test prints about the processes it ran: for each `*.log` file in `logDir` (pino JSON
 * lines), its warnings and errors (level ≥ 40, at most `maxWarnings` of the last ones) and its last `lines`
 * lines, each cut to 400 characters. Missing dir → a line saying so. Never throws: diagnostics must not hide
 * the failure they explain.
 */
export async function logTails(logDir: string, lines = 8, maxWarnings = 10): Promise<string> {
  let files: string[];
  try {
    files = (await readdir(logDir)).filter((f) => f.endsWith(".log")).sort();
  } catch {
    return `(no logs in ${logDir})`;
  }
  const cut = (l: string) => (l.length > 400 ? `${l.slice(0, 400)}…` : l);
  const out: string[] = [];
  for (const f of files) {
    const all = (await readFile(join(logDir, f), "utf8").catch(() => "")).split("\n").filter(Boolean);
    const warnings = all.filter((l) => /"level":(4|5|6)\d/.test(l)).slice(-maxWarnings);
    out.push(`── ${f} (${all.length} lines, ${warnings.length} warnings/errors shown)`);
    for (const l of warnings) out.push(`  ! ${cut(l)}`);
    for (const l of all.slice(-lines)) out.push(`    ${cut(l)}`);
  }
  return out.join("\n");
}

/** A Node process started by {@link startNodeProcess}: the child and the match of its ready line. */
export interface StartedNodeProcess {
  child: import("node:child_process").ChildProcess;
  match: RegExpExecArray;
}

/**
 * Starts `node <script> ...args` (this Node binary) in `cwd` with exactly `env`, stderr inherited, and resolves
 * once a stdout line matches `ready`; every stdout line also goes to `onLine` (e.g. to collect pino JSON).
 * Stopping it is the caller's (`child.kill()`).
 * @throws when the process exits before a line matches.
 */
export function startNodeProcess(
  script: string,
  args: readonly string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; ready: RegExp; onLine?: (line: string) => void },
): Promise<StartedNodeProcess> {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: opts.cwd,
    env: opts.env,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise<StartedNodeProcess>((resolve, reject) => {
    let buf = "";
    child.once("exit", (code) => reject(new Error(`${script} exited (${code}) before it was ready`)));
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        opts.onLine?.(line);
        const m = opts.ready.exec(line);
        if (m) resolve({ child, match: m });
      }
    });
  });
}
