import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseEnv, promisify } from "node:util";
import { findNatsServer } from "@longshot/bus";
import { NATS_ROLES, natsPasswordVar } from "@longshot/contracts";
import { tempDir } from "@longshot/testkit";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { freePort, ROOT } from "../src/cluster.ts";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { natsServerVersion } from "../src/nats-nodes.ts";
import { listScript, makeListRepo } from "./fixtures.ts";

// deploy/docker-compose.yml proven without Docker: every service it defines runs here as a local process with the
// command, environment and env files compose would give it (host names mapped to loopback ports, the three NATS
// nodes from nats.conf, the same ./.env, gateway.env and secrets.env a user writes), nats-init creates the R3
// topology as admin, and a request runs green through it. Images that are not built from this repository
// (Prometheus, Grafana, the NATS exporter) are not run.

const run = promisify(execFile);
const KEY = "sim-compose-key-30a9";
type Service = {
  build?: unknown;
  image?: string;
  command?: string[];
  environment?: Record<string, string | number>;
  env_file?: string[];
  restart?: string;
  init?: boolean;
  healthcheck?: { test: string[] };
  security_opt?: string[];
  depends_on?: unknown;
  ports?: string[];
};

let dir: Awaited<ReturnType<typeof tempDir>>;
let sim: SimLlmProcess;
let compose: { services: Record<string, Service> };
const procs = new Map<string, ChildProcess>();
const hostPorts = new Map<string, number>();
let vars: Record<string, string>;
let deployDir: string;

/** Compose's variable substitution: `${VAR}`, `${VAR:-default}`, `${VAR:?error}` (the error thrown). */
function substitute(value: string, env: Record<string, string>): string {
  return value.replace(
    /\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}/g,
    (_, name: string, op?: string, arg?: string) => {
      const v = env[name];
      if (v !== undefined && v !== "") return v;
      if (op === "?") throw new Error(`compose would refuse: ${name}: ${arg}`);
      return op === "-" ? (arg ?? "") : "";
    },
  );
}

/** Host names of the compose network → loopback addresses of the processes standing in for them. */
function mapHosts(value: string): string {
  return value.replace(
    /\b(nats-[123]|llm-gateway):(4222|4000|6222|8222)\b/g,
    (m, host: string, port: string) => {
      const p = hostPorts.get(`${host}:${port}`);
      if (!p) throw new Error(`no local port for ${m}`);
      return `127.0.0.1:${p}`;
    },
  );
}

async function envFiles(files: string[] | undefined): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of files ?? []) Object.assign(out, parseEnv(await readFile(join(deployDir, f), "utf8")));
  return out;
}

/** The environment compose gives `name` (env files, then `environment`, substituted, host names mapped). */
async function serviceEnvOf(name: string): Promise<Record<string, string>> {
  const s = compose.services[name]!;
  const env: Record<string, string> = { ...(await envFiles(s.env_file)) };
  for (const [k, v] of Object.entries(s.environment ?? {})) env[k] = mapHosts(substitute(String(v), vars));
  return env;
}

function start(name: string, cmd: string, args: string[], env: Record<string, string>): ChildProcess {
  const fd = openSync(join(dir.path, `${name}.log`), "a");
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  procs.set(name, child);
  return child;
}

beforeAll(async () => {
  dir = await tempDir("longshot-compose-");
  compose = parse(await readFile(join(ROOT, "deploy/docker-compose.yml"), "utf8"), { merge: true });
  const script = join(dir.path, "script.json");
  await writeFile(script, JSON.stringify(listScript(3)));
  sim = await startSimLlmProcess(script, KEY);
  // What a user writes next to the compose file: the three env files, from the examples.
  deployDir = join(dir.path, "deploy");
  await cp(join(ROOT, "deploy"), deployDir, { recursive: true });
  const example = await readFile(join(deployDir, ".env.example"), "utf8");
  await writeFile(join(deployDir, ".env"), `${example}\nLLM_MODEL=${sim.model}\nMAX_WORKERS=3\n`);
  await writeFile(
    join(deployDir, "gateway.env"),
    `LLM_ENDPOINTS=[{"name":"sim","endpoint":"${sim.url}","apiKey":"${KEY}"}]\n`,
  );
  const passwords = (await readFile(join(deployDir, "secrets.env.example"), "utf8")).replace(
    /^(NATS_[A-Z]+_PASSWORD|GATEWAY_ADMIN_TOKEN)=$/gm,
    (_, k: string) => `${k}=p${randomBytes(18).toString("hex")}`,
  );
  await writeFile(join(deployDir, "secrets.env"), passwords);
  vars = parseEnv(passwords) as Record<string, string>;
  for (const h of ["nats-1", "nats-2", "nats-3"])
    for (const p of ["4222", "6222", "8222"]) hostPorts.set(`${h}:${p}`, await freePort());
  hostPorts.set("llm-gateway:4000", await freePort());
}, 60_000);

afterAll(async () => {
  await Promise.all(
    [...procs.values()].map(
      (c) =>
        new Promise<void>((r) => {
          if (c.exitCode !== null || c.signalCode !== null) return r();
          c.once("exit", () => r());
          c.kill("SIGTERM");
          setTimeout(() => c.kill("SIGKILL"), 10_000).unref();
        }),
    ),
  );
  await sim?.stop();
  await dir?.cleanup();
});

describe("deploy/docker-compose.yml as local processes", () => {
  it("hardens the deployment: no NATS port on the host, healthchecks, restart policies, init, non-root image", async () => {
    const s = compose.services;
    for (const n of ["nats-1", "nats-2", "nats-3"]) expect(s[n]!.ports ?? []).toEqual([]);
    for (const [name, svc] of Object.entries(s)) {
      expect(svc.restart, name).toMatch(/unless-stopped|on-failure/);
      if (svc.build || (name.startsWith("nats-") && !name.includes("exporter"))) {
        if (name !== "nats-init") expect(svc.healthcheck?.test, name).toBeDefined();
      }
    }
    expect(s.dispatcher!.init).toBe(true);
    expect(s.dispatcher!.security_opt).toContain("seccomp=unconfined");
    const dockerfile = await readFile(join(ROOT, "deploy/Dockerfile"), "utf8");
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toContain("bubblewrap");
    const dockerignore = (await readFile(join(ROOT, ".dockerignore"), "utf8")).split("\n");
    for (const p of [
      "**/.env",
      "**/node_modules",
      ".git",
      ".longshot",
      "deploy/gateway.env",
      "deploy/secrets.env",
    ])
      expect(dockerignore, p).toContain(p);
    // Secrets by need: the gateway's admin token reaches the gateway and the dispatcher only, and each NATS
    // password its role's service (the NATS nodes hold them all, and no other secret).
    const holders: string[] = [];
    for (const name of Object.keys(s)) {
      const env = await serviceEnvOf(name);
      if (env.GATEWAY_ADMIN_TOKEN) holders.push(name);
      const passwords = Object.keys(env).filter((k) => /^NATS_[A-Z]+_PASSWORD$/.test(k));
      if (/^nats-[123]$/.test(name)) expect(passwords.length, name).toBe(9);
      else expect(passwords, name).toEqual([]);
    }
    expect(holders.sort()).toEqual(["dispatcher", "llm-gateway"]);
    // docker-compose (v1, no engine needed) accepts the file with the env files a user writes.
    await run("docker-compose", ["--env-file", "secrets.env", "-f", "docker-compose.yml", "config", "-q"], {
      cwd: deployDir,
    });
  });

  it("runs a request green through three NATS nodes from nats.conf, nats-init and every service", async () => {
    // NATS nodes: nats.conf as the image gets it, with the addresses of this machine.
    const version = natsServerVersion();
    const conf = await readFile(join(ROOT, "nats.conf"), "utf8");
    const started: Promise<void>[] = [];
    for (const n of ["nats-1", "nats-2", "nats-3"]) {
      const svc = compose.services[n]!;
      let text = conf
        .replace("listen: 0.0.0.0:4222", `listen: 127.0.0.1:${hostPorts.get(`${n}:4222`)}`)
        .replace("http: 0.0.0.0:8222", `http: 127.0.0.1:${hostPorts.get(`${n}:8222`)}`)
        .replace("listen: 0.0.0.0:6222", `listen: 127.0.0.1:${hostPorts.get(`${n}:6222`)}`)
        .replace('store_dir: "/data"', `store_dir: "${join(dir.path, n)}"`)
        .replace(
          /nats-route:\/\/(nats-[123]):6222/g,
          (_, h: string) => `nats-route://127.0.0.1:${hostPorts.get(`${h}:6222`)}`,
        );
      // 2.9 and 2.10 do not know sync_interval (nats.conf targets the compose image, 2.11).
      if (version && (version[0] < 2 || (version[0] === 2 && version[1] < 11)))
        text = text.replace(/^\s*sync_interval: always\n/m, "");
      const path = join(dir.path, `${n}.conf`);
      await writeFile(path, text, { mode: 0o600 });
      expect(svc.command!.slice(0, 2)).toEqual(["nats-server", "-c"]);
      const child = start(n, findNatsServer(), ["-c", path], {
        ...(await serviceEnvOf(n)),
        PATH: process.env.PATH ?? "",
      });
      started.push(
        new Promise<void>((resolve, reject) => {
          child.once("exit", (c) => {
            void readFile(join(dir.path, `${n}.log`), "utf8").then((log) =>
              reject(new Error(`${n} exited ${c}: ${log}`)),
            );
          });
          void (async () => {
            for (let i = 0; i < 200; i++) {
              const res = await fetch(`http://127.0.0.1:${hostPorts.get(`${n}:8222`)}/varz`).catch(
                () => undefined,
              );
              if (res?.ok) return resolve();
              await new Promise((r) => setTimeout(r, 100));
            }
            reject(new Error(`${n} did not answer`));
          })();
        }),
      );
    }
    await Promise.all(started);
    // The nats healthcheck, as compose runs it (wget on the node's monitoring port).
    for (const n of ["nats-1", "nats-2", "nats-3"]) {
      const test = compose.services[n]!.healthcheck!.test.slice(1).map((a) =>
        a.replace("127.0.0.1:8222", `127.0.0.1:${hostPorts.get(`${n}:8222`)}`),
      );
      for (let i = 0; ; i++) {
        const ok = await run(test[0]!, test.slice(1)).then(
          () => true,
          () => false,
        );
        if (ok) break;
        if (i > 100) throw new Error(`${n} not healthy`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    // An anonymous client is refused by the deployed config.
    const first = `nats://127.0.0.1:${hostPorts.get("nats-1:4222")}`;
    await expect(connect({ servers: first })).rejects.toThrow(/Authorization Violation/);

    // nats-init: the admin creates the R3 topology.
    const base = {
      PATH: process.env.PATH ?? "",
      HOME: join(dir.path, "home"),
      LONGSHOT_STATE_DIR: join(dir.path, "state"),
    };
    await mkdir(base.HOME, { recursive: true });
    const init = compose.services["nats-init"]!;
    const { stdout } = await run(process.execPath, init.command!, {
      cwd: ROOT,
      env: { ...base, ...(await serviceEnvOf("nats-init")) },
    });
    expect(stdout).toContain("(3 replicas)");

    // Every service built from this repository, as `node <command>` (the image's entrypoint) with its env.
    const services = Object.entries(compose.services).filter(([n, s]) => s.build && n !== "nats-init");
    expect(services.map(([n]) => n).sort()).toEqual(
      ["dispatcher", "llm-gateway", "merger", "monitor", "planner", "reconciler", "subplanner"].sort(),
    );
    const metricsPorts = new Map<string, number>();
    for (const [name] of services) {
      const env: Record<string, string> = { ...base, ...(await serviceEnvOf(name)) };
      // One host instead of one network namespace per container: each service gets its own metrics port.
      if (env.METRICS_PORT) {
        metricsPorts.set(name, await freePort());
        env.METRICS_PORT = String(metricsPorts.get(name));
      }
      if (name === "llm-gateway") env.GATEWAY_PORT = String(hostPorts.get("llm-gateway:4000"));
      start(name, process.execPath, compose.services[name]!.command!, env);
    }
    // Every healthcheck passes once the service is up (as compose would run it, on this service's port).
    for (const [name, svc] of services) {
      const port = name === "llm-gateway" ? hostPorts.get("llm-gateway:4000")! : metricsPorts.get(name)!;
      const test = svc
        .healthcheck!.test.slice(1)
        .map((a) => a.replace(/127\.0\.0\.1:(9464|4000)/, `127.0.0.1:${port}`));
      for (let i = 0; ; i++) {
        const ok = await run(test[0]!, test.slice(1)).then(
          () => true,
          () => false,
        );
        if (ok) break;
        const p = procs.get(name)!;
        if (p.exitCode !== null)
          throw new Error(
            `${name} exited ${p.exitCode}: ${await readFile(join(dir.path, `${name}.log`), "utf8")}`,
          );
        if (i > 300)
          throw new Error(`${name} not healthy: ${await readFile(join(dir.path, `${name}.log`), "utf8")}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }

    // A request from the submitter (it may publish requests and read events, nothing else), to its green end.
    const repo = join(dir.path, "repos", "app");
    await makeListRepo(repo);
    const nc: NatsConnection = await connect({
      servers: [1, 2, 3].map((i) => `nats://127.0.0.1:${hostPorts.get(`nats-${i}:4222`)}`),
      user: "submitter",
      pass: vars[natsPasswordVar("submitter")]!,
    });
    try {
      const sub = nc.subscribe("longshot.event.run-compose.>");
      nc.publish(
        "longshot.request",
        JSON.stringify({ runId: "run-compose", prompt: "Add list helpers", repo }),
      );
      let completed: { data: { status: string; merged: number } } | undefined;
      for await (const m of sub) {
        const e = m.json<{ type: string; data: { status: string; merged: number } }>();
        if (e.type === "run.completed") {
          completed = e;
          break;
        }
      }
      expect(completed!.data).toMatchObject({ status: "green", merged: 3 });
    } finally {
      await nc.close();
    }
    for (const r of NATS_ROLES) expect(vars[natsPasswordVar(r)]).toMatch(/^p[0-9a-f]{36}$/);
  });
});
