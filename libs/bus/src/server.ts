import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A nats-server child process with JetStream. `url` is `nats://127.0.0.1:<port>`. */
export interface NatsServerHandle {
  url: string;
  port: number;
  storeDir: string;
  pid: number;
  /** SIGTERM, wait for exit (SIGKILL after 5 s), remove the store unless `keepStore` was set. */
  stop(): Promise<void>;
}

/** Locates the nats-server binary: `NATS_SERVER_BIN`, then PATH, then Debian's `/usr/sbin/nats-server`. */
export function findNatsServer(): string {
  const fromEnv = process.env.NATS_SERVER_BIN;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, "nats-server"))) return join(dir, "nats-server");
  }
  for (const p of ["/usr/sbin/nats-server", "/usr/local/bin/nats-server", "/usr/bin/nats-server"])
    if (existsSync(p)) return p;
  throw new Error(
    "nats-server not found: install it (apt-get install -y nats-server) or set NATS_SERVER_BIN",
  );
}

/**
 * Starts `nats-server -js` on a random loopback port with a store dir (a new temp dir unless given),
 * and resolves once it reports ready (timeout 20 s). `maxPayloadBytes` raises the server's message size limit
 * (default 1 MiB; the embedded cluster uses 4 MiB like `nats.conf`, since a run's state is one KV value) through
 * a generated config file; `configFile` passes a config of your own instead.
 * @throws when the binary is missing or the server does not become ready.
 */
export async function startNatsServer(
  opts: { storeDir?: string; keepStore?: boolean; configFile?: string; maxPayloadBytes?: number } = {},
): Promise<NatsServerHandle> {
  const bin = findNatsServer();
  const storeDir = opts.storeDir ?? (await mkdtemp(join(tmpdir(), "longshot-nats-")));
  const portsDir = await mkdtemp(join(tmpdir(), "longshot-nats-ports-"));
  const args = ["-a", "127.0.0.1", "-p", "-1", "-js", "-sd", storeDir, "--ports_file_dir", portsDir];
  let configFile = opts.configFile;
  if (configFile === undefined && opts.maxPayloadBytes !== undefined) {
    configFile = join(portsDir, "nats.conf");
    await writeFile(configFile, `max_payload: ${Math.floor(opts.maxPayloadBytes)}\n`);
  }
  if (configFile) args.unshift("-c", configFile);
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`nats-server not ready after 20 s:\n${stderr.slice(-2000)}`)),
      20_000,
    );
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes("Server is ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with ${code}:\n${stderr.slice(-2000)}`));
    });
  });
  await ready;
  child.stderr.removeAllListeners("data");
  child.stderr.resume();
  // The server may report ready a moment before it writes its ports file, and a file just created may still be
  // empty: wait for one that parses (≤ 5 s).
  let ports: { nats: string[] } | undefined;
  for (const deadline = Date.now() + 5000; ; ) {
    const file = (await readdir(portsDir)).find((f) => f.endsWith(".ports"));
    if (file) {
      try {
        ports = JSON.parse(await readFile(join(portsDir, file), "utf8")) as { nats: string[] };
      } catch {
        // being written
      }
    }
    if (ports?.nats?.[0] || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  if (!ports?.nats?.[0]) {
    child.kill("SIGKILL");
    throw new Error("nats-server wrote no complete ports file within 5 s of starting");
  }
  await rm(portsDir, { recursive: true, force: true });
  const url = ports.nats[0]!;
  const port = Number(new URL(url).port);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return {
    url,
    port,
    storeDir,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      if (!opts.keepStore) await rm(storeDir, { recursive: true, force: true });
    },
  };
}
