// Checks of infra/ that run without Docker, GPUs, Modal or network: Python byte-compiles, shell scripts parse,
// the Modal app and the self-hosted launcher carry the settings Longshot relies on, the sandbox Dockerfile only
// copies what exists and sets up the worker entry, and the example LLM_ENDPOINTS parse as the gateway parses them.
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { gatewayOptionsFromEnv } from "../../services/llm-gateway/src/config.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const INFRA = join(ROOT, "infra");
const DOCKERFILE = join(INFRA, "sandbox/Dockerfile");
const LAUNCH = join(INFRA, "sglang/launch.sh");
const MODAL_APP = join(INFRA, "modal/glm5_sglang.py");
const WORKER_ENTRY = "/opt/longshot/services/worker/src/main.ts";
const WORKER_PROMPT = "/opt/longshot/prompts/worker.md";
const scratch = mkdtempSync(join(tmpdir(), "longshot-infra-test-"));

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Files under `dir` (recursive, repo-relative), without caches. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === "__pycache__" || entry.name === "node_modules") continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else out.push(relative(ROOT, path));
  }
  return out.sort();
}

/** Runs a command from the repo root; a missing binary fails with `why` instead of ENOENT. */
function run(
  cmd: string,
  args: string[],
  why: string,
  env: NodeJS.ProcessEnv = {},
): SpawnSyncReturns<string> {
  const res = spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  if (res.error) throw new Error(`${cmd} could not be run (${res.error.message}): ${why}`);
  return res;
}

const PYTHON_ENV = { PYTHONDONTWRITEBYTECODE: "1", PYTHONPYCACHEPREFIX: join(scratch, "pycache") };
function python(args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return run(
    "python3",
    args,
    "python3 must be on PATH; infra/test byte-compiles infra/**/*.py with it and checks the Modal app",
    { ...PYTHON_ENV, ...env },
  );
}

/** What the Modal-app probe prints (see `probe` below). */
interface ModalProbe {
  cmd: string[];
  dummyCmd: string[];
  env: Record<string, string>;
  image: string;
  gpu: string;
  port: number;
  hfHome: string;
  functions: { gpu?: string; volumes: string[]; secrets: number; max_containers?: number }[];
  webServer: { port?: number; startup_timeout?: number; label?: string }[];
  concurrent: { max_inputs?: number }[];
  registry: string[][];
  secrets: [string[], Record<string, unknown>][];
  shortKeyRejected: boolean;
  configMode: string;
  configText: string;
}

/** The value after `flag` in an argv, or undefined. */
function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

describe("python (infra/**/*.py)", () => {
  const pyFiles = filesUnder(INFRA).filter((f) => f.endsWith(".py"));

  it("byte-compiles every file with python3 -m py_compile", () => {
    expect(pyFiles).toContain("infra/modal/glm5_sglang.py");
    for (const file of pyFiles) {
      const res = python(["-m", "py_compile", file]);
      expect(res.stderr, file).toBe("");
      expect(res.status, `${file}: ${res.stderr}`).toBe(0);
    }
  });
});

describe("Modal app (infra/modal/glm5_sglang.py)", () => {
  // Imports the module with a stand-in for the `modal` package (not installed here): the plain helpers run for
  // real, and the stand-in records what the decorators and factories were called with.
  const probe = `
import json, os, stat, sys, tempfile, unittest.mock
modal = unittest.mock.MagicMock()
sys.modules["modal"] = modal
sys.path.insert(0, os.path.join("infra", "modal"))
import glm5_sglang as m

def jsonable(v):
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False

def kwargs(mock):
    return [{k: v for k, v in c.kwargs.items() if k not in ("volumes", "secrets") and jsonable(v)}
            | {"volumes": sorted(c.kwargs.get("volumes", {})), "secrets": len(c.kwargs.get("secrets", []))}
            for c in mock.call_args_list]

short_key_rejected = False
try:
    m.write_api_key_config("short", os.path.join(tempfile.mkdtemp(), "a.yaml"))
except RuntimeError:
    short_key_rejected = True
cfg = m.write_api_key_config("k" * 40, os.path.join(tempfile.mkdtemp(), "auth.yaml"))
print(json.dumps({
    "cmd": m.sglang_command("/tmp/auth.yaml", dummy_weights=False),
    "dummyCmd": m.sglang_command("/tmp/auth.yaml", dummy_weights=True),
    "env": m.server_env(dummy_weights=False),
    "image": m.SGLANG_IMAGE, "gpu": m.GPU, "port": m.PORT, "hfHome": m.HF_HOME,
    "functions": kwargs(m.app.function),
    "webServer": kwargs(modal.web_server),
    "concurrent": kwargs(modal.concurrent),
    "registry": [list(c.args) for c in modal.Image.from_registry.call_args_list],
    "secrets": [[list(c.args), c.kwargs] for c in modal.Secret.from_name.call_args_list],
    "shortKeyRejected": short_key_rejected,
    "configMode": oct(stat.S_IMODE(os.stat(cfg).st_mode)),
    "configText": open(cfg).read(),
}))
`;
  let probed: ModalProbe | undefined;
  /** Runs the probe once (lazily, so a missing python3 fails a test with its message, not the collection). */
  const probeOnce = (): ModalProbe => {
    if (!probed) {
      const res = python(["-c", probe], { GLM5_API_KEY: "the-key-must-not-reach-sglang-env" });
      if (res.status !== 0 || res.stderr !== "")
        throw new Error(`importing ${MODAL_APP} failed:\n${res.stderr}`);
      probed = JSON.parse(res.stdout) as ModalProbe;
    }
    return probed;
  };

  it("imports with its settings", () => {
    expect(probeOnce().cmd.length).toBeGreaterThan(3);
  });

  it("serves glm-5 on 8×B200 from lmsysorg/sglang:glm5-blackwell with tensor parallel 8", () => {
    const out = probeOnce();
    expect(out.image).toBe("lmsysorg/sglang:glm5-blackwell");
    expect(out.registry).toEqual([["lmsysorg/sglang:glm5-blackwell"]]);
    expect(out.gpu).toBe("B200:8");
    const cmd: string[] = out.cmd;
    expect(cmd.slice(0, 3)).toEqual(["python3", "-m", "sglang.launch_server"]);
    expect(flagValue(cmd, "--served-model-name")).toBe("glm-5");
    expect(flagValue(cmd, "--model-path")).toBe("zai-org/GLM-5-FP8");
    expect(flagValue(cmd, "--tp-size")).toBe("8");
    expect(flagValue(cmd, "--tool-call-parser")).toBe("glm47");
    expect(flagValue(cmd, "--reasoning-parser")).toBe("glm45");
    expect(flagValue(cmd, "--port")).toBe(String(out.port));
    expect(flagValue(cmd, "--host")).toBe("0.0.0.0");
    for (const flag of ["--enable-metrics", "--enable-cache-report", "--trust-remote-code"]) {
      expect(cmd).toContain(flag);
    }
    expect(cmd).not.toContain("--load-format");
    expect(flagValue(out.dummyCmd, "--load-format")).toBe("dummy");
  });

  it("keeps the API key off the command line and out of the server's environment", () => {
    const out = probeOnce();
    const cmd: string[] = out.cmd;
    expect(flagValue(cmd, "--config")).toBe("/tmp/auth.yaml");
    expect(cmd).not.toContain("--api-key");
    expect(out.env.GLM5_API_KEY).toBeUndefined();
    expect(JSON.stringify(out.env)).not.toContain("the-key-must-not-reach-sglang-env");
    expect(out.env.HF_HUB_OFFLINE).toBe("1");
    expect(out.shortKeyRejected).toBe(true);
    expect(out.configMode).toBe("0o600");
    expect(out.configText).toBe(`api-key: "${"k".repeat(40)}"\n`);
    expect(out.secrets).toEqual([[["glm5-api-key"], { required_keys: ["GLM5_API_KEY"] }]]);
  });

  it("wires a web server on the SGLang port with the GPU, the weights volume and the key secret", () => {
    const out = probeOnce();
    expect(out.webServer).toHaveLength(1);
    const [web] = out.webServer;
    expect(web?.port).toBe(out.port);
    expect(web?.startup_timeout).toBeGreaterThanOrEqual(30 * 60);
    expect(typeof web?.label).toBe("string");
    expect(out.concurrent[0]?.max_inputs).toBeGreaterThan(1);
    const gpuFunctions = out.functions.filter((f) => f.gpu !== undefined);
    expect(gpuFunctions).toHaveLength(1);
    const [gpu] = gpuFunctions;
    expect(gpu?.gpu).toBe("B200:8");
    expect(gpu?.volumes).toContain(out.hfHome);
    expect(gpu?.max_containers).toBeGreaterThanOrEqual(1);
    expect(gpu?.secrets).toBe(1);
    // The CPU-only download function fills the same volume path.
    const download = out.functions.filter((f) => f.gpu === undefined);
    expect(download.map((f) => [f.volumes, f.secrets])).toEqual([[[out.hfHome], 0]]);
  });
});

describe("shell (infra/**/*.sh)", () => {
  const shFiles = filesUnder(INFRA).filter((f) => f.endsWith(".sh"));

  it("parses every script with bash -n", () => {
    expect(shFiles).toContain("infra/sglang/launch.sh");
    for (const file of shFiles) {
      const res = run("bash", ["-n", file], "bash is required");
      expect(res.status, `${file}: ${res.stderr}`).toBe(0);
    }
  });

  it("launch.sh builds the same SGLang command as the Modal app, with the key in a config file", () => {
    const key = "0123456789abcdef0123456789abcdef";
    const res = run("bash", [LAUNCH, "--extra-flag"], "bash is required", {
      LAUNCH_DRY_RUN: "1",
      SGLANG_API_KEY: key,
    });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stdout).not.toContain(key);
    const argv = res.stdout.trim().split(/\s+/);
    expect(argv.slice(0, 3)).toEqual(["python3", "-m", "sglang.launch_server"]);
    expect(flagValue(argv, "--config")).toMatch(/auth\.yaml$/);
    expect(flagValue(argv, "--served-model-name")).toBe("glm-5");
    expect(flagValue(argv, "--model-path")).toBe("zai-org/GLM-5-FP8");
    expect(flagValue(argv, "--tp-size")).toBe("8");
    expect(flagValue(argv, "--tool-call-parser")).toBe("glm47");
    expect(flagValue(argv, "--reasoning-parser")).toBe("glm45");
    expect(argv).toContain("--enable-metrics");
    expect(argv).toContain("--enable-cache-report");
    expect(argv).not.toContain("--api-key");
    expect(argv.at(-1)).toBe("--extra-flag");
  });

  it("launch.sh refuses to serve without a key unless told to", () => {
    const noKey = run("bash", [LAUNCH], "bash is required", { LAUNCH_DRY_RUN: "1", SGLANG_API_KEY: "" });
    expect(noKey.status).toBe(2);
    expect(noKey.stderr).toContain("SGLANG_API_KEY");
    const open = run("bash", [LAUNCH], "bash is required", {
      LAUNCH_DRY_RUN: "1",
      SGLANG_API_KEY: "",
      SGLANG_ALLOW_OPEN: "1",
    });
    expect(open.status, open.stderr).toBe(0);
    expect(open.stdout).not.toContain("--config");
  });
});

/** Dockerfile instructions: continuation lines joined, comments and parser directives dropped. */
function dockerInstructions(text: string): { op: string; args: string }[] {
  const out: { op: string; args: string }[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (current === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue; // comment inside a continued instruction
    if (line.endsWith("\\")) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    const m = /^(\S+)\s*(.*)$/s.exec(current.trim());
    if (m) out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim() });
    current = "";
  }
  return out;
}

/** `COPY [--flag=…]… src… dest` (shell form). */
function parseCopy(args: string): { flags: string[]; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith("--"));
  const paths = words.filter((w) => !w.startsWith("--"));
  return { flags, sources: paths.slice(0, -1), dest: paths.at(-1)! };
}

/** Names set by `ENV a=1 b=2`, `ENV a 1` or `ARG a[=1]`. */
function declaredNames(op: string, args: string): string[] {
  if (op === "ARG") return [args.split("=")[0]!.trim()];
  if (!args.includes("=")) return [args.split(/\s+/)[0]!];
  return [...args.matchAll(/(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=/g)].map((m) => m[1]!);
}

/** The worker package and every workspace package it depends on, transitively: repo-relative directories. */
function workerWorkspaceClosure(): string[] {
  const byName = new Map<string, string>();
  for (const group of ["libs", "services"]) {
    for (const dir of readdirSync(join(ROOT, group))) {
      const manifest = join(ROOT, group, dir, "package.json");
      if (existsSync(manifest))
        byName.set(JSON.parse(readFileSync(manifest, "utf8")).name, `${group}/${dir}`);
    }
  }
  const seen = new Set<string>();
  const visit = (dir: string) => {
    if (seen.has(dir)) return;
    seen.add(dir);
    const pkg = JSON.parse(readFileSync(join(ROOT, dir, "package.json"), "utf8"));
    for (const [name, spec] of Object.entries<string>(pkg.dependencies ?? {})) {
      if (!spec.startsWith("workspace:")) continue;
      const target = byName.get(name);
      if (!target) throw new Error(`${dir} depends on unknown workspace package ${name}`);
      visit(target);
    }
  };
  visit("services/worker");
  return [...seen].sort();
}

describe("sandbox image (infra/sandbox/Dockerfile)", () => {
  const instructions = dockerInstructions(readFileSync(DOCKERFILE, "utf8"));
  const stages = new Set<string>();
  const copies = instructions.filter((i) => i.op === "COPY").map((i) => parseCopy(i.args));
  const contextCopies = copies.filter((c) => !c.flags.some((f) => f.startsWith("--from=")));

  it("starts with FROM and pins every base image", () => {
    expect(instructions[0]?.op).toBe("FROM");
    const froms = instructions.filter((i) => i.op === "FROM");
    for (const { args } of froms) {
      const [image, as, alias] = args.split(/\s+/);
      if (as?.toUpperCase() === "AS" && alias) stages.add(alias);
      expect(image, args).toMatch(/(:\d+\.\d+\.\d+[^\s]*|@sha256:[0-9a-f]{64})$/);
      expect(image).not.toMatch(/:latest$/);
    }
    expect(froms.length).toBeGreaterThanOrEqual(1);
  });

  it("copies only paths that exist in the build context (the repository root)", () => {
    expect(contextCopies.length).toBeGreaterThan(0);
    for (const { sources } of contextCopies) {
      for (const src of sources) expect(existsSync(join(ROOT, src)), `COPY source ${src}`).toBe(true);
    }
    for (const copy of copies.filter((c) => c.flags.some((f) => f.startsWith("--from=")))) {
      const from = copy.flags.find((f) => f.startsWith("--from="))!.slice("--from=".length);
      expect(stages.has(from) || /[:/]/.test(from), `COPY ${copy.flags.join(" ")}: unknown stage`).toBe(true);
    }
  });

  it("sets up the worker entry and the worker prompt from files that exist", () => {
    for (const target of [WORKER_ENTRY, WORKER_PROMPT]) {
      const found = contextCopies.some(({ sources, dest }) => {
        const d = dest.replace(/\/$/, "");
        if (sources.length !== 1 || !(target === d || target.startsWith(`${d}/`))) return false;
        const file = join(ROOT, sources[0]!, target.slice(d.length));
        return existsSync(file) && statSync(file).isFile();
      });
      expect(found, `no COPY provides ${target}`).toBe(true);
    }
    const env = instructions
      .filter((i) => i.op === "ENV")
      .map((i) => i.args)
      .join(" ");
    expect(env).toContain(`LONGSHOT_WORKER_ENTRY=${WORKER_ENTRY}`);
    expect(env).toContain(`LONGSHOT_WORKER_PROMPT=${WORKER_PROMPT}`);
  });

  it("copies the manifest and sources of every workspace package the worker imports", () => {
    const closure = workerWorkspaceClosure();
    expect(closure).toContain("services/worker");
    const copied = new Set(contextCopies.flatMap((c) => c.sources));
    for (const dir of closure) {
      expect(copied.has(`${dir}/package.json`), `COPY ${dir}/package.json`).toBe(true);
      expect(copied.has(`${dir}/src`), `COPY ${dir}/src`).toBe(true);
    }
    // Every @longshot import in those sources is a declared dependency, i.e. inside the closure.
    const names = new Set(
      closure.map((d) => JSON.parse(readFileSync(join(ROOT, d, "package.json"), "utf8")).name),
    );
    for (const dir of closure) {
      for (const file of filesUnder(join(ROOT, dir, "src")).filter((f) => f.endsWith(".ts"))) {
        for (const m of readFileSync(join(ROOT, file), "utf8").matchAll(/from "(@longshot\/[a-z-]+)/g)) {
          expect(names.has(m[1]!), `${file} imports ${m[1]}, which the image does not contain`).toBe(true);
        }
      }
    }
    const install = instructions.find((i) => i.op === "RUN" && i.args.includes("pnpm install"));
    expect(install?.args).toContain("--frozen-lockfile");
    expect(install?.args).toContain("--prod");
    expect(install?.args).toContain('--filter "@longshot/worker..."');
  });

  it("runs as a non-root user in /workspace and declares no secret-looking ARG or ENV", () => {
    const users = instructions.filter((i) => i.op === "USER").map((i) => i.args);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
    expect(instructions.filter((i) => i.op === "WORKDIR").at(-1)?.args).toBe("/workspace");
    const declared = instructions
      .filter((i) => i.op === "ARG" || i.op === "ENV")
      .flatMap((i) => declaredNames(i.op, i.args));
    expect(declared).toContain("LONGSHOT_WORKER_ENTRY");
    for (const name of declared) {
      expect(name, "secret-looking ARG/ENV").not.toMatch(/KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH/i);
    }
  });

  it("keeps .git, node_modules, .tools and .longshot out of the build context", () => {
    const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    for (const entry of [".git", "**/node_modules", ".tools", ".longshot"]) expect(ignored).toContain(entry);
  });
});

describe("gateway configuration examples", () => {
  const examples = {
    selfHosted: join(INFRA, "sglang/llm-endpoints.example.json"),
    modal: join(INFRA, "modal/llm-endpoints.example.json"),
  };
  const parse = (file: string) =>
    gatewayOptionsFromEnv({
      LLM_ENDPOINTS: readFileSync(file, "utf8"),
      GATEWAY_ADMIN_TOKEN: "x".repeat(32),
    }).upstreams;

  it("parse as LLM_ENDPOINTS exactly as the gateway parses them", () => {
    for (const file of Object.values(examples)) {
      const upstreams = parse(file);
      expect(upstreams.length).toBeGreaterThan(0);
      for (const u of upstreams) {
        expect(u.endpoint).toMatch(/\/v1$/);
        expect(u.apiKey).toBeTruthy();
        expect(u.models?.length).toBeGreaterThan(0);
      }
    }
  });

  it("name the models the launch recipes serve", () => {
    const compose = readFileSync(join(INFRA, "sglang/docker-compose.yml"), "utf8");
    for (const u of parse(examples.selfHosted)) {
      for (const model of u.models ?? []) expect(compose).toContain(`SERVED_MODEL_NAME: ${model}`);
    }
    const [modalUpstream] = parse(examples.modal);
    expect(modalUpstream?.models).toEqual(["glm-5"]);
    expect(modalUpstream?.endpoint).toMatch(/^https:\/\/[a-z0-9-]+--longshot-glm5\.modal\.run\/v1$/);
    expect(readFileSync(MODAL_APP, "utf8")).toContain('ENDPOINT_LABEL = "longshot-glm5"');
  });
});

describe("docker-compose snippet (infra/sglang/docker-compose.yml)", () => {
  // scripts/bootstrap.sh installs Debian's docker-compose (v1): it validates without a Docker engine.
  it("passes docker-compose config -q", () => {
    const res = run(
      "docker-compose",
      ["-f", "infra/sglang/docker-compose.yml", "config", "-q"],
      "docker-compose is required (scripts/bootstrap.sh installs Debian's docker-compose)",
    );
    expect(res.status, res.stderr).toBe(0);
  });
});

describe("infra/README.md", () => {
  it("describes every file under infra/", () => {
    const readme = readFileSync(join(INFRA, "README.md"), "utf8");
    for (const file of filesUnder(INFRA)) {
      if (file === "infra/README.md") continue;
      expect(readme, `README does not mention ${file}`).toContain(relative("infra", file));
    }
  });
});
