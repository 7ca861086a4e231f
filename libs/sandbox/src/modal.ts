import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import type { Logger } from "@longshot/log";
import { type App, type ContainerProcess, type Image, ModalClient, type Sandbox } from "modal";
import type {
  SandboxBackend,
  SandboxCapabilities,
  SandboxExecOptions,
  SandboxHandle,
  SandboxProcess,
} from "./backend.ts";

/** Where the sandbox image (infra/sandbox/Dockerfile) installs the worker. */
const IMAGE_ROOT = "/opt/longshot";
const WORKSPACE = "/workspace";
/** Modal's longest sandbox lifetime (24 h), in ms. */
const MODAL_MAX_RUNTIME_MS = 24 * 3600_000;
/** Tag every Longshot sandbox carries; its value is the owning service (for reaping). */
export const MODAL_OWNER_TAG = "longshot-owner";

/** Options of {@link createModalBackend}. */
export interface ModalBackendOptions {
  /** Modal app the sandboxes belong to (created if missing). */
  appName: string;
  /** Registry tag of the sandbox image (built from infra/sandbox/Dockerfile and pushed by the user). */
  image: string;
  /** Who owns the sandboxes (the service, e.g. `dispatcher`): its restart reaps them by tag. */
  owner: string;
  log: Logger;
  /**
   * The Modal client; default `new ModalClient()`, which reads `MODAL_TOKEN_ID`, `MODAL_TOKEN_SECRET` and
   * `MODAL_SERVER_URL` from the environment when it is constructed (never written anywhere by Longshot;
   * modal 0.11.1 ignores the constructor's `endpoint`, so the server comes only from `MODAL_SERVER_URL`).
   */
  client?: ModalClient;
}

/** Tag values Modal accepts: the label, with anything outside `[A-Za-z0-9._-]` replaced, at most 63 chars. */
function tagValue(v: string): string {
  return v.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 63);
}

/** Modal timeouts must be whole seconds (`timeoutMs` a multiple of 1000, > 0). */
function wholeSeconds(ms: number): number {
  return Math.max(1000, Math.ceil(ms / 1000) * 1000);
}

/**
 * The Modal sandbox backend (`SANDBOX_PROVIDER=modal`) on the `modal` JS SDK 0.11.1:
 * - one Modal sandbox per task attempt (or sweep), from the image `options.image` (built once per process and
 *   reused by id), with `cpu`/`memoryMiB` from the limits, `timeoutMs` as Modal's own hard lifetime, and
 *   tags `longshot-owner`, `runId`, `taskId`, `purpose` (reaping and the Modal dashboard);
 * - **no network** (`blockNetwork: true`) and no secret: the worker reaches the model over its exec's stdio
 *   (the model relay; the per-task credential stays in the dispatcher), so the gateway needs no public
 *   address and the sandbox can call nothing else — not the gateway's admin API, not NATS. A sweep whose
 *   install needs the network gets it at creation, and its egress allowlist is cut to loopback
 *   (`updateNetworkPolicy`) before the first check without network runs;
 * - the workspace is seeded from a bundle of the mirror uploaded through the filesystem API, and the
 *   branch comes back as a bundle read the same way;
 * - `terminate()` on every path (also timeout and abort); `reap()` terminates every sandbox tagged with this
 *   owner (a restarted dispatcher's predecessor's).
 */
export function createModalBackend(options: ModalBackendOptions): SandboxBackend {
  const modal = options.client ?? new ModalClient();
  let app: Promise<App> | undefined;
  let image: Promise<Image> | undefined;
  const capabilities: SandboxCapabilities = {
    isolation: "modal",
    network: "none",
    limits: ["memoryMb", "cpuCores"],
    maxRuntimeMs: MODAL_MAX_RUNTIME_MS,
    snapshots: true,
    gpu: true,
  };
  const getApp = () => {
    app ??= modal.apps.fromName(options.appName, { createIfMissing: true });
    return app;
  };
  const getImage = () => {
    image ??= getApp().then(async (a) => {
      const built = await modal.images.fromRegistry(options.image).build(a);
      options.log.info({ image: options.image, imageId: built.imageId }, "sandbox image ready");
      return built;
    });
    image.catch(() => {
      image = undefined;
    });
    return image;
  };

  return {
    name: "modal",
    capabilities,
    async create(spec) {
      const [a, img] = await Promise.all([getApp(), getImage()]);
      const tags: Record<string, string> = { [MODAL_OWNER_TAG]: tagValue(options.owner) };
      for (const [k, v] of Object.entries(spec.labels)) tags[k] = tagValue(v);
      const wantsNetwork = spec.installNetwork === true;
      const sb = await modal.sandboxes.create(a, img, {
        ...(spec.limits.cpuCores !== undefined ? { cpu: spec.limits.cpuCores } : {}),
        ...(spec.limits.memoryMb !== undefined ? { memoryMiB: spec.limits.memoryMb } : {}),
        timeoutMs: wholeSeconds(Math.min(spec.timeoutMs, MODAL_MAX_RUNTIME_MS)),
        workdir: WORKSPACE,
        ...(wantsNetwork ? {} : { blockNetwork: true }),
        tags,
      });
      options.log.info({ sandboxId: sb.sandboxId, id: spec.id }, "modal sandbox created");
      return modalHandle(sb, spec.id, wantsNetwork, options.log);
    },
    async reap() {
      let n = 0;
      for await (const sb of modal.sandboxes.list({ tags: { [MODAL_OWNER_TAG]: tagValue(options.owner) } })) {
        await sb.terminate().catch((err: unknown) => options.log.warn({ err }, "reap: terminate failed"));
        n++;
      }
      return n;
    },
  };
}

function modalHandle(sb: Sandbox, id: string, networkOpen: boolean, log: Logger): SandboxHandle {
  let terminated = false;
  let open = networkOpen;

  const closeNetwork = async (): Promise<void> => {
    if (!open) return;
    open = false;
    // Loopback only: nothing outside the sandbox is reachable any more.
    // modal 0.11.1 requires both lists (it throws InvalidError before sending otherwise).
    await sb.updateNetworkPolicy({ outboundCidrAllowlist: ["127.0.0.1/32"], outboundDomainAllowlist: [] });
  };

  const exec = (o: SandboxExecOptions): SandboxProcess => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const pendingWrites: string[] = [];
    let proc: ContainerProcess<string> | undefined;
    let killed = false;
    let writing = Promise.resolve();
    const started = (async () => {
      if (o.network !== "host") await closeNetwork();
      const p = await sb.exec(o.argv, {
        stdout: "pipe",
        stderr: "pipe",
        workdir: o.cwd,
        env: o.env,
        ...(o.timeoutMs ? { timeoutMs: wholeSeconds(o.timeoutMs) } : {}),
      });
      proc = p;
      Readable.fromWeb(p.stdout as never).pipe(stdout);
      Readable.fromWeb(p.stderr as never).pipe(stderr);
      for (const text of pendingWrites.splice(0)) writing = writing.then(() => p.stdin.writeText(text));
      return p;
    })();
    const exited = started.then(
      async (p) => ({ code: await p.wait() }),
      (err: unknown) => {
        log.warn({ err, sandboxId: sb.sandboxId }, "modal exec failed");
        stdout.end();
        stderr.end();
        return { code: null, signal: "spawn-error" };
      },
    );
    return {
      stdout,
      stderr,
      write(text) {
        if (proc) {
          const p = proc;
          writing = writing.then(() => p.stdin.writeText(text)).catch(() => undefined);
        } else pendingWrites.push(text);
      },
      // A killed exec reports no exit code, like a local process killed by a signal.
      wait: () => exited.then((r) => (killed ? { code: null, signal: "SIGKILL" } : r)),
      kill() {
        // Modal has no per-exec kill: the whole sandbox goes (callers kill only to end the attempt).
        killed = true;
        void sb.terminate().catch(() => undefined);
      },
    };
  };

  const run = async (argv: string[]): Promise<{ code: number | null; out: string; err: string }> => {
    const p = exec({ argv, cwd: WORKSPACE, env: {} });
    let out = "";
    let err = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    p.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    const { code } = await p.wait();
    return { code, out, err };
  };

  return {
    id: sb.sandboxId,
    workspace: WORKSPACE,
    worker: {
      node: "node",
      entry: `${IMAGE_ROOT}/services/worker/src/main.ts`,
      systemPrompt: `${IMAGE_ROOT}/prompts/worker.md`,
    },
    env: { HOME: "/home/sandbox", TMPDIR: "/tmp", PATH: "/usr/local/bin:/usr/bin:/bin" },
    async seedRepo(mirror, opts = {}) {
      const tmp = await mkdtemp(join(tmpdir(), "longshot-seed-"));
      try {
        const file = join(tmp, "seed.bundle");
        await mirror.bundle(file, opts.refs?.length ? opts.refs : ["--branches"]);
        await sb.filesystem.writeBytes(await readFile(file), `${WORKSPACE}/seed.bundle`);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
      const repo = `${WORKSPACE}/repo`;
      // A clone takes the bundle's branches; any other ref (e.g. a merge queue candidate) is fetched as itself.
      const privateRefs = (opts.refs ?? []).filter(
        (r) => r.startsWith("refs/") && !r.startsWith("refs/heads/"),
      );
      const steps = [
        ["git", "clone", "-q", "--no-checkout", `${WORKSPACE}/seed.bundle`, repo],
        ...privateRefs.map((r) => [
          "git",
          "-C",
          repo,
          "fetch",
          "-q",
          `${WORKSPACE}/seed.bundle`,
          `+${r}:${r}`,
        ]),
        ...(opts.detach ? [["git", "-C", repo, "checkout", "-q", "--detach", opts.detach]] : []),
        ["rm", "-f", `${WORKSPACE}/seed.bundle`],
      ];
      for (const argv of steps) {
        const r = await run(argv);
        if (r.code !== 0)
          throw new Error(`${argv.slice(0, 2).join(" ")} in the sandbox failed: ${r.err.trim()}`);
      }
      return repo;
    },
    exec,
    async readFile(path, maxBytes) {
      const probe = await run(["sh", "-c", 'test -f "$1" || exit 3; wc -c < "$1"', "sh", path]);
      if (probe.code === 3) return undefined;
      if (probe.code !== 0) throw new Error(`reading ${path} in the sandbox failed: ${probe.err.trim()}`);
      if (Number(probe.out.trim()) > maxBytes) throw new Error(`${path} is larger than ${maxBytes} bytes`);
      return Buffer.from(await sb.filesystem.readBytes(path));
    },
    async writeFile(path, data) {
      if (typeof data === "string") await sb.filesystem.writeText(data, path);
      else await sb.filesystem.writeBytes(data, path);
    },
    async limitHit() {
      // Modal reports an OOM kill as exit code 137 of the process, not as a sandbox property.
      return undefined;
    },
    async terminate() {
      if (terminated) return;
      terminated = true;
      await sb
        .terminate()
        .catch((err: unknown) => log.warn({ err, sandboxId: sb.sandboxId, id }, "terminate failed"));
    },
  };
}
