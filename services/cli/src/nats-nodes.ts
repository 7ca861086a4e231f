import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createWriteStream, existsSync, type WriteStream } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { findNatsServer } from "@longshot/bus";
import type { NatsPermissions } from "@longshot/contracts";

/** One user of the embedded cluster's server config. */
export interface NatsUser {
  user: string;
  password: string;
  /** Subject permissions (nats-server `permissions` block); absent = every subject. */
  permissions?: NatsPermissions;
}

/** One node of an embedded cluster: client port, route port (clustered only), store. */
export interface NatsNodeSpec {
  name: string;
  port: number;
  storeDir: string;
  /** Route port of this node, when clustered. */
  clusterPort?: number;
  /** Monitoring port (`/varz`, `/jsz`, `/healthz` on 127.0.0.1), read by the monitor; absent = none. */
  httpPort?: number;
}

/** A nats-server version as `[major, minor, patch]`, from `nats-server --version` ("nats-server: v2.9.10"). */
export function parseNatsVersion(text: string): [number, number, number] | undefined {
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/**
 * The config file of one node. JetStream with the node's store; `max_payload` `maxPayloadBytes` (a run's state
 * is one KV value); `users` in an `authorization` block (a client without valid credentials is refused);
 * `sync_interval: always` (fsync every write before acknowledging it) when `version` is 2.11 or later — 2.9
 * and 2.10 have no such setting: they write every message to the OS before acknowledging it (a killed server
 * loses nothing) and fsync every 2 minutes (a power loss can lose acknowledged writes). With `routes` (the route
 * ports of every node) the node joins cluster `longshot`. NATS configs accept JSON values, so the users and
 * their permissions are written as JSON.
 */
export function natsNodeConfig(opts: {
  node: NatsNodeSpec;
  users: NatsUser[];
  maxPayloadBytes: number;
  version?: [number, number, number];
  routes?: number[];
}): string {
  const { node } = opts;
  const v = opts.version;
  const syncAlways = v !== undefined && (v[0] > 2 || (v[0] === 2 && v[1] >= 11));
  const lines = [
    `server_name: ${JSON.stringify(node.name)}`,
    `listen: "127.0.0.1:${node.port}"`,
    `max_payload: ${Math.floor(opts.maxPayloadBytes)}`,
    ...(node.httpPort !== undefined ? [`http: "127.0.0.1:${node.httpPort}"`] : []),
    `jetstream: ${JSON.stringify({ store_dir: node.storeDir, ...(syncAlways ? { sync_interval: "always" } : {}) })}`,
  ];
  if (opts.users.length > 0) lines.push(`authorization: ${JSON.stringify({ users: opts.users }, null, 1)}`);
  if (opts.routes && node.clusterPort !== undefined) {
    lines.push(
      `cluster: ${JSON.stringify({
        name: "longshot",
        listen: `127.0.0.1:${node.clusterPort}`,
        routes: opts.routes.map((p) => `nats-route://127.0.0.1:${p}`),
      })}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** The nats-server binary's version, or undefined when it does not say. */
export function natsServerVersion(bin = findNatsServer()): [number, number, number] | undefined {
  try {
    return parseNatsVersion(execFileSync(bin, ["--version"], { encoding: "utf8", timeout: 5000 }));
  } catch {
    return undefined;
  }
}

let setprivPath: string | null | undefined;
/**
 * `setpriv` (util-linux ≥ 2.33) when present: children are started through `setpriv --pdeathsig SIGTERM`, so the
 * kernel signals them when the CLI dies, even by SIGKILL (PR_SET_PDEATHSIG, which Node does not expose).
 */
export function pdeathsigPrefix(signal = "SIGTERM"): string[] {
  if (setprivPath === undefined) {
    setprivPath = null;
    for (const p of ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]) {
      if (!existsSync(p)) continue;
      try {
        execFileSync(p, ["--pdeathsig", signal, "--", "true"], { timeout: 5000 });
        setprivPath = p;
      } catch {
        // an old setpriv without --pdeathsig
      }
      break;
    }
  }
  return setprivPath ? [setprivPath, "--pdeathsig", signal, "--"] : [];
}

/** The running nats-server nodes of an embedded cluster. */
export interface NatsNodes {
  /** Client URL of each node, `nats://127.0.0.1:<port>`. */
  urls: string[];
  /** Current pid of each node. */
  pids(): Array<number | undefined>;
  /** Restarts so far of each node. */
  restarts(): number[];
  /** SIGTERM every node and wait for it (SIGKILL after 10 s); no restart afterwards. */
  stop(): Promise<void>;
}

/**
 * Starts `specs.length` nats-server nodes (1 = a single server, 3 = a cluster with routes) from config files
 * written to `confDir` (mode 0600: they hold the users' passwords), each logging to `<logDir>/nats-<name>.log`,
 * and supervises them: a node that exits while the cluster runs is restarted on the same port and store after
 * 200 ms (at most 20 times), so clients reconnect to the same address. Resolves once every node reported
 * "Server is ready". Each node runs with `env` only, through {@link pdeathsigPrefix}, in its own process group.
 * @throws when a node does not become ready within 30 s (with its last log lines).
 */
export async function startNatsNodes(opts: {
  specs: NatsNodeSpec[];
  users: NatsUser[];
  maxPayloadBytes: number;
  confDir: string;
  logDir: string;
  env: Record<string, string>;
  notify?: (line: string) => void;
  onPids?: () => void;
}): Promise<NatsNodes> {
  const bin = findNatsServer();
  const version = natsServerVersion(bin);
  const clustered = opts.specs.length > 1;
  const routes = clustered ? opts.specs.map((s) => s.clusterPort!) : undefined;
  await mkdir(opts.confDir, { recursive: true, mode: 0o700 });
  const children: Array<ChildProcess | undefined> = [];
  const restarts = opts.specs.map(() => 0);
  const logs: WriteStream[] = [];
  let stopping = false;

  const launch = (i: number): Promise<void> => {
    const spec = opts.specs[i]!;
    const conf = join(opts.confDir, `${spec.name}.conf`);
    const prefix = pdeathsigPrefix();
    const [cmd, ...args] = [...prefix, bin, "-c", conf];
    const child = spawn(cmd!, args, { env: opts.env, stdio: ["ignore", "ignore", "pipe"], detached: true });
    children[i] = child;
    opts.onPids?.();
    const log = logs[i]!;
    let tail = "";
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`nats-server ${spec.name} not ready after 30 s:\n${tail.slice(-2000)}`)),
        30_000,
      );
      child.stderr!.on("data", (d: Buffer) => {
        // A server's last lines can arrive after stop() ended its log (the exit comes before the pipe drains).
        if (!log.writableEnded) log.write(d);
        if (tail.length < 100_000) tail += d.toString();
        if (tail.includes("Server is ready")) {
          clearTimeout(timer);
          tail = "";
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server ${spec.name} exited with ${code}:\n${tail.slice(-2000)}`));
      });
    });
    child.once("exit", (code, signal) => {
      if (stopping || children[i] !== child) return;
      restarts[i]!++;
      if (restarts[i]! > 20) {
        opts.notify?.(`nats-server ${spec.name} died too often (${signal ?? code}); not restarting`);
        return;
      }
      opts.notify?.(
        `nats-server ${spec.name} exited (${signal ?? `code ${code}`}); restarting on port ${spec.port}`,
      );
      setTimeout(() => {
        if (!stopping)
          launch(i).catch((e: Error) =>
            opts.notify?.(`nats-server ${spec.name} did not restart: ${e.message}`),
          );
      }, 200);
    });
    return ready;
  };

  for (const [i, spec] of opts.specs.entries()) {
    await mkdir(spec.storeDir, { recursive: true });
    await writeFile(
      join(opts.confDir, `${spec.name}.conf`),
      natsNodeConfig({
        node: spec,
        users: opts.users,
        maxPayloadBytes: opts.maxPayloadBytes,
        ...(version ? { version } : {}),
        ...(routes ? { routes } : {}),
      }),
      { mode: 0o600 },
    );
    logs[i] = createWriteStream(join(opts.logDir, `nats-${spec.name}.log`), { flags: "a" });
  }
  const stop = async () => {
    stopping = true;
    await Promise.all(children.map((c) => (c ? stopChild(c, 10_000) : undefined)));
    for (const l of logs) l.end();
  };
  try {
    await Promise.all(opts.specs.map((_, i) => launch(i)));
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    urls: opts.specs.map((s) => `nats://127.0.0.1:${s.port}`),
    pids: () => children.map((c) => c?.pid),
    restarts: () => [...restarts],
    stop,
  };
}

/**
 * SIGTERMs `child` and waits for its exit; after `graceMs` SIGKILLs its process group (it was started detached,
 * so the group holds it and whatever it started that stayed in the group).
 */
export function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, graceMs);
    child.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
