/**
 * The sandbox runtime behind the emulator: what a Modal sandbox and an exec'd process are here.
 *
 * A sandbox is a host directory (`<root>/<sandboxId>/workspace`, seen inside as `/workspace`) plus a {@link Box}
 * whose processes see the host system read-only, the Longshot checkout read-only at `/opt/longshot`, and that
 * workspace. Every exec is one box process; its stdout/stderr are kept in memory ({@link OutputBuffer}) so the
 * router can stream them from any offset, live, as the SDK's `TaskExecStdioRead` expects.
 */
import type { ChildProcess } from "node:child_process";
import { realpathSync } from "node:fs";
import { chmod, chown, mkdir, rm } from "node:fs/promises";
import { constants } from "node:os";
import { dirname, join, posix } from "node:path";
import { BOX_HOME, type Box, type BoxFactory, type BoxLimits } from "./box.ts";
import { FS_TOOLS_PATH, FsToolCommandError, fsToolArgv } from "./fs-tools.ts";
import { GenericStatus } from "./proto.ts";
import { invalid, notFound, precondition } from "./rpc.ts";

/** The exit of a process: exactly one of `code` (normal exit) or `signal` (signal number). */
export type ExitStatus = { code: number; signal?: undefined } | { signal: number; code?: undefined };

/** `GenericResult` of a finished sandbox, as api.proto defines it (status from {@link GenericStatus}). */
export interface SandboxResult {
  status: number;
  exitcode: number;
  exception: string;
}

const MAX_CHUNK = 1 << 20;

/**
 * An append-only byte stream kept whole in memory: writers `push` and `end`; any number of readers iterate it
 * from any offset, live (a reader waits for more data until `end`).
 */
export class OutputBuffer {
  #chunks: Buffer[] = [];
  #length = 0;
  #ended = false;
  #waiters = new Set<() => void>();

  /** Bytes pushed so far. */
  get length(): number {
    return this.#length;
  }
  get ended(): boolean {
    return this.#ended;
  }
  push(data: Buffer): void {
    if (this.#ended || data.length === 0) return;
    this.#chunks.push(data);
    this.#length += data.length;
    this.#wake();
  }
  end(): void {
    this.#ended = true;
    this.#wake();
  }
  /** Everything pushed so far, as one buffer. */
  text(): string {
    return Buffer.concat(this.#chunks).toString("utf8");
  }
  #wake(): void {
    const ws = [...this.#waiters];
    this.#waiters.clear();
    for (const w of ws) w();
  }
  /** The bytes from `offset` on (≤ 1 MiB per chunk, never empty), live until `end()` or `signal` aborts. */
  async *read(offset: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
    let pos = offset;
    let i = 0;
    let start = 0;
    for (;;) {
      while (i < this.#chunks.length) {
        const chunk = this.#chunks[i]!;
        const end = start + chunk.length;
        if (pos < end) {
          const slice = chunk.subarray(Math.max(0, pos - start));
          pos = end;
          for (let o = 0; o < slice.length; o += MAX_CHUNK) yield slice.subarray(o, o + MAX_CHUNK);
        }
        start = end;
        i++;
      }
      if (this.#ended || signal?.aborted) return;
      await new Promise<void>((resolve) => {
        // One waiter per wait, and the abort listener goes with it (a long stream waits thousands of times).
        const onAbort = () => {
          this.#waiters.delete(wake);
          resolve();
        };
        const wake = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        this.#waiters.add(wake);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
  }
}

/** How an exec's stdout/stderr are handled (TaskExecStdoutConfig / TaskExecStderrConfig). */
export type StdioMode = "pipe" | "devnull" | "stdout";

/** One process started by `TaskExecStart` (or a sandbox's entrypoint). */
export class ExecProcess {
  readonly execId: string;
  readonly argv: string[];
  readonly stdout = new OutputBuffer();
  readonly stderr = new OutputBuffer();
  /** Resolves with the exit status when the process exits. */
  readonly exited: Promise<ExitStatus>;
  #exit: ExitStatus | undefined;
  #child: ChildProcess;
  #stdinWritten = 0;
  #stdinClosed = false;
  #stdinQueue: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    execId: string,
    argv: string[],
    child: ChildProcess,
    opts: { stdout: StdioMode; stderr: StdioMode; timeoutMs?: number },
  ) {
    this.execId = execId;
    this.argv = argv;
    this.#child = child;
    const sink = (mode: StdioMode, own: OutputBuffer): OutputBuffer | undefined =>
      mode === "devnull" ? undefined : mode === "stdout" ? this.stdout : own;
    const outSink = sink(opts.stdout, this.stdout);
    const errSink = sink(opts.stderr, this.stderr);
    let open = 2;
    const closed = () => {
      if (--open === 0) {
        this.stdout.end();
        this.stderr.end();
      }
    };
    for (const [stream, target] of [
      [child.stdout, outSink],
      [child.stderr, errSink],
    ] as const) {
      if (!stream) {
        closed();
        continue;
      }
      stream.on("data", (d: Buffer) => target?.push(d));
      stream.once("close", closed);
    }
    if (opts.stdout === "devnull") this.stdout.end();
    child.stdin?.on("error", () => {
      // EPIPE when the process exits with unread input: reported to the writer through the write callback.
    });
    this.exited = new Promise<ExitStatus>((resolve) => {
      child.once("exit", (code, sig) => {
        this.#exit =
          code !== null ? { code } : { signal: (sig && constants.signals[sig]) || constants.signals.SIGKILL };
        clearTimeout(this.#timer);
        resolve(this.#exit);
      });
      child.once("error", (err) => {
        if (this.#exit) return;
        this.stderr.push(Buffer.from(`emulator: cannot start process: ${err.message}\n`));
        this.stdout.end();
        this.stderr.end();
        this.#exit = { code: 127 };
        resolve(this.#exit);
      });
    });
    if (opts.timeoutMs) {
      this.#timer = setTimeout(() => this.kill(), opts.timeoutMs);
      this.#timer.unref();
    }
  }

  /** Host PID of the process (of its `bwrap` wrapper, for bwrap boxes). */
  get pid(): number | undefined {
    return this.#child.pid;
  }
  /** The exit status, or undefined while running. */
  get exit(): ExitStatus | undefined {
    return this.#exit;
  }
  /** `TaskExecStdinStatus`: bytes accepted so far and whether EOF was sent. */
  get stdinStatus(): { numBytesWritten: number; closed: boolean } {
    return { numBytesWritten: this.#stdinWritten, closed: this.#stdinClosed };
  }

  /**
   * Writes `data` to stdin at byte `offset` of the stdin stream (a resent prefix is skipped, so retries are
   * idempotent, as `TaskExecStdinWriteRequest.offset` specifies), then closes stdin when `eof`. Resolves once
   * the data was handed to the pipe. Throws FAILED_PRECONDITION for a gap in the offsets, data after EOF, or a
   * process that has exited.
   */
  writeStdin(offset: number, data: Buffer, eof: boolean): Promise<void> {
    const op = this.#stdinQueue.then(async () => {
      if (offset > this.#stdinWritten) {
        throw precondition(`stdin offset ${offset} is past the ${this.#stdinWritten} bytes written`);
      }
      const fresh = data.subarray(Math.min(data.length, this.#stdinWritten - offset));
      const stdin = this.#child.stdin;
      if (fresh.length > 0) {
        if (this.#stdinClosed) throw precondition("stdin is closed");
        if (this.#exit || !stdin) throw precondition("the process has exited");
        await new Promise<void>((resolve, reject) =>
          stdin.write(fresh, (err) =>
            err ? reject(precondition(`stdin write failed: ${err.message}`)) : resolve(),
          ),
        );
        this.#stdinWritten += fresh.length;
      }
      if (eof && !this.#stdinClosed) {
        this.#stdinClosed = true;
        stdin?.end();
      }
    });
    this.#stdinQueue = op.catch(() => {});
    return op;
  }

  /** SIGKILLs the process (the box's `killAll` takes care of its descendants). */
  kill(): void {
    if (this.#exit) return;
    try {
      if (this.#child.pid !== undefined) process.kill(-this.#child.pid, "SIGKILL");
    } catch {
      this.#child.kill("SIGKILL");
    }
  }
}

/** Image metadata as `ImageGetOrCreate` recorded it; images are never built. */
export interface ImageRecord {
  imageId: string;
  /** The registry tag of `FROM <tag>` (`modal.images.fromRegistry(tag)`), or `""` for a layer on a base image. */
  registryTag: string;
  /** This layer's Dockerfile commands without the `FROM` line. */
  commands: string[];
  /** Image id of the layer below (`FROM base`), or `""`. */
  baseImageId: string;
  appId: string;
}

/** An image with its layers folded: the effective registry tag, commands, `ENV` and `WORKDIR`. */
export interface ImageDescription {
  imageId: string;
  registryTag: string;
  /** Dockerfile commands of all layers, bottom first, `FROM` lines excluded. */
  commands: string[];
  /** Variables set by `ENV` commands (applied to every process of a sandbox on this image). */
  env: Record<string, string>;
  /** The last `WORKDIR`, or undefined. */
  workdir?: string;
}

/** Parses `ENV K=V …` / `ENV K V` and `WORKDIR` lines; every other command is recorded, not executed. */
export function foldImage(layers: ImageRecord[]): ImageDescription {
  const top = layers[layers.length - 1]!;
  const env: Record<string, string> = {};
  let workdir: string | undefined;
  const commands: string[] = [];
  for (const layer of layers) {
    for (const cmd of layer.commands) {
      commands.push(cmd);
      const m = /^\s*(ENV|WORKDIR)\s+(.*)$/i.exec(cmd);
      if (!m) continue;
      const rest = m[2]!.trim();
      if (m[1]!.toUpperCase() === "WORKDIR") {
        workdir = posix.resolve(workdir ?? "/", rest);
      } else if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(rest)) {
        for (const pair of rest.match(/[A-Za-z_][A-Za-z0-9_]*=("[^"]*"|\S*)/g) ?? []) {
          const eq = pair.indexOf("=");
          env[pair.slice(0, eq)] = pair.slice(eq + 1).replace(/^"(.*)"$/, "$1");
        }
      } else {
        const [k, ...v] = rest.split(/\s+/);
        if (k) env[k] = v.join(" ");
      }
    }
  }
  return { imageId: top.imageId, registryTag: layers[0]!.registryTag, commands, env, workdir };
}

/** The network policy of a sandbox, from `Sandbox.network_access` (or the legacy `block_network` flag). */
export type NetworkPolicy = "open" | "blocked" | "allowlist";

/** What `SandboxCreate(V2)` asked for, normalized. Units: MiB, cores, seconds. */
export interface SandboxParams {
  appId: string;
  imageId: string;
  /** Entrypoint argv (`command` of `sandboxes.create`); empty = idle until terminated or timed out. */
  command: string[];
  /** `cpu` of `sandboxes.create` in cores (`Resources.milli_cpu` / 1000), undefined when not given. */
  cpu?: number;
  /** `cpuLimit` in cores (`Resources.milli_cpu_max` / 1000). */
  cpuLimit?: number;
  /** `memoryMiB` (`Resources.memory_mb`). */
  memoryMiB?: number;
  /** `memoryLimitMiB` (`Resources.memory_mb_max`). */
  memoryLimitMiB?: number;
  /** `Sandbox.timeout_secs`: the sandbox is terminated (status TIMEOUT) when it elapses. */
  timeoutSecs: number;
  workdir?: string;
  network: NetworkPolicy;
  allowedCidrs: string[];
  allowedDomains: string[];
  /** Environment given at create (`env` of `sandboxes.create`: V2 inline `secret_sources`, V1 ephemeral secrets). */
  env: Record<string, string>;
  name?: string;
}

/** Options of {@link SandboxRuntime}. */
export interface RuntimeOptions {
  /** Host directory under which every sandbox gets `<sandboxId>/`. */
  root: string;
  /** The Longshot checkout, mounted read-only at `/opt/longshot`. */
  checkoutDir: string;
  createBox: BoxFactory;
  /** `isolation` given to the box factory (default `bwrap`). */
  isolation: "bwrap" | "unsafe";
  /** Default process limit of a box (`pidsMax`). */
  pidsMax: number;
}

/**
 * Environment every process starts with, before the image's `ENV`, the sandbox's and the exec's variables: the
 * PATH of the `node` images (Node is at `/usr/local/bin/node`, see {@link SandboxRuntime.create}) and HOME of
 * the sandbox image.
 */
export function baseEnv(): Record<string, string> {
  return {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    HOME: BOX_HOME,
    LANG: "C.UTF-8",
  };
}

/** One emulated sandbox: its params, tags, box, processes and (once finished) result. */
export class EmulatedSandbox {
  readonly sandboxId: string;
  readonly taskId: string;
  /** `v1` (created by `SandboxCreate`) or `v2` (`SandboxCreateV2`); the SDK tells them apart by id shape. */
  readonly version: "v1" | "v2";
  /** Creation time, Unix seconds (strictly increasing across sandboxes; `SandboxInfo.created_at`). */
  readonly createdAt: number;
  readonly params: SandboxParams;
  readonly image: ImageDescription;
  /** Host directory of the sandbox (`workspace/` is its `/workspace`); removed when it finishes. */
  readonly dir: string;
  /** The JWT the command router accepts for this sandbox's task. */
  readonly jwt: string;
  tags: Record<string, string>;
  readonly execs = new Map<string, ExecProcess>();
  /** Entrypoint process, when `command` was given. */
  entry: ExecProcess | undefined;
  /** Output of the sandbox itself when it has no entrypoint (empty, ends when the sandbox finishes). */
  readonly idleOutput = new OutputBuffer();
  #result: SandboxResult | undefined;
  #finishedAt: number | undefined;
  #box: Box | undefined;
  #cleanup: Promise<void> | undefined;
  #done: () => void = () => {};
  /** Resolves when the sandbox has a result (its processes may still be being killed). */
  readonly finished: Promise<void>;
  #timer: NodeJS.Timeout | undefined;

  constructor(init: {
    sandboxId: string;
    taskId: string;
    version: "v1" | "v2";
    createdAt: number;
    params: SandboxParams;
    image: ImageDescription;
    dir: string;
    jwt: string;
    tags: Record<string, string>;
  }) {
    this.sandboxId = init.sandboxId;
    this.taskId = init.taskId;
    this.version = init.version;
    this.createdAt = init.createdAt;
    this.params = init.params;
    this.image = init.image;
    this.dir = init.dir;
    this.jwt = init.jwt;
    this.tags = init.tags;
    this.finished = new Promise((resolve) => {
      this.#done = resolve;
    });
  }

  get result(): SandboxResult | undefined {
    return this.#result;
  }
  get finishedAt(): number | undefined {
    return this.#finishedAt;
  }
  /**
   * The box network mode of new processes: `host` for an open policy, `none` when blocked. An allowlist cannot
   * be enforced by a box: one that names only loopback CIDRs (and no domain) is `none`, any other is `host`.
   */
  get boxNetwork(): "none" | "host" {
    const { network, allowedCidrs, allowedDomains } = this.params;
    if (network === "open") return "host";
    if (network === "blocked") return "none";
    const loopback = (c: string) => c.startsWith("127.") || c === "::1" || c === "::1/128";
    return allowedDomains.length === 0 && allowedCidrs.every(loopback) ? "none" : "host";
  }
  /**
   * `TaskSetNetworkAccess` (`sb.updateNetworkPolicy`): the new policy applies to processes started from now on;
   * running processes keep the network they started with (Modal would also cut their connections).
   */
  setNetwork(network: NetworkPolicy, allowedCidrs: string[], allowedDomains: string[]): void {
    Object.assign(this.params, { network, allowedCidrs, allowedDomains });
  }
  /** Working directory of processes that name none: `workdir` of create, the image's `WORKDIR`, or `/`. */
  get defaultCwd(): string {
    return this.params.workdir || this.image.workdir || "/";
  }

  /** Limits the box was created with (from the create params). */
  get boxLimits(): BoxLimits {
    return this.#limits;
  }
  /** How the box enforces them (`cgroup2`, `cgroup1`, `rlimit`, `none`). */
  get limiter(): Box["limiter"] | undefined {
    return this.#box?.limiter;
  }
  #limits: BoxLimits = {};

  /** @internal Called by the runtime once the box exists. */
  attach(box: Box, limits: BoxLimits, timeoutMs: number, onTimeout: () => void): void {
    this.#box = box;
    this.#limits = limits;
    this.#timer = setTimeout(onTimeout, timeoutMs);
    this.#timer.unref();
  }

  /** Environment of a process: base, image `ENV`, create `env`, then `extra`. */
  envFor(extra: Record<string, string>): Record<string, string> {
    return { ...baseEnv(), ...this.image.env, ...this.params.env, ...extra };
  }

  /**
   * Starts a process in the box. `argv[0] === FS_TOOLS_PATH` runs the emulator's fs-tools instead (see
   * fs-tools.ts). A missing `cwd` under `/workspace` is created first, by the process itself inside the box
   * (`mkdir -p` then `exec`), so a symlink planted in the workspace never makes the emulator touch host paths.
   * Throws NOT_FOUND once finished (the SDK's filesystem calls turn that into "The Sandbox is unavailable").
   */
  async spawn(
    execId: string,
    argv: string[],
    opts: {
      cwd?: string;
      env: Record<string, string>;
      stdout: StdioMode;
      stderr: StdioMode;
      timeoutMs?: number;
    },
  ): Promise<ExecProcess> {
    const box = this.#box;
    if (this.#result || !box) throw notFound(`Sandbox ${this.sandboxId} has finished`);
    let real = argv;
    if (argv[0] === FS_TOOLS_PATH) {
      try {
        real = fsToolArgv(argv[1]);
      } catch (err) {
        if (err instanceof FsToolCommandError) throw invalid(err.message);
        throw err;
      }
    }
    if (real.length === 0) throw invalid("empty command");
    let cwd = argv[0] === FS_TOOLS_PATH ? "/" : (opts.cwd ?? this.defaultCwd);
    if (cwd.startsWith("/workspace/")) {
      real = ["/bin/sh", "-c", 'mkdir -p -- "$0" && cd -- "$0" && exec "$@"', cwd, ...real];
      cwd = "/";
    }
    const child = box.exec({ argv: real, cwd, env: opts.env, network: this.boxNetwork, stdin: "pipe" });
    return new ExecProcess(execId, argv, child, opts);
  }

  /**
   * Finishes the sandbox with `result` (the first result wins): kills every process, destroys the box and removes
   * the sandbox directory. Resolves when all of that is done.
   */
  finish(result: SandboxResult): Promise<void> {
    if (!this.#result) {
      this.#result = result;
      this.#finishedAt = Date.now() / 1000;
      clearTimeout(this.#timer);
      this.idleOutput.end();
      this.#done();
      const box = this.#box;
      this.#cleanup = (async () => {
        for (const p of this.execs.values()) p.kill();
        this.entry?.kill();
        if (box) {
          await box.killAll().catch(() => {});
          await box.destroy().catch(() => {});
        }
        await Promise.all([...this.execs.values()].map((p) => p.exited));
        await rm(this.dir, { recursive: true, force: true });
      })();
    }
    return this.#cleanup ?? Promise.resolve();
  }
}

/** Creates boxes for sandboxes and holds them by sandbox id and task id. */
export class SandboxRuntime {
  readonly sandboxes = new Map<string, EmulatedSandbox>();
  readonly byTask = new Map<string, EmulatedSandbox>();
  #opts: RuntimeOptions;
  #lastCreatedAt = 0;

  constructor(opts: RuntimeOptions) {
    this.#opts = opts;
  }

  /**
   * Creates and starts a sandbox: its directory, its box (limits from the params: memory = `memoryLimitMiB` ??
   * `memoryMiB`, cpu = `cpuLimit` ?? `cpu`), its timeout, and its entrypoint if `command` is set. Mounts: the
   * workspace at `/workspace` (writable), the checkout at `/opt/longshot` and the directory of the running Node
   * binary at `/usr/local/bin` (read-only), so `node` is `/usr/local/bin/node` as in the `node:24` images the
   * sandbox image is built on (the host's own `/usr/local/bin` is hidden).
   */
  async create(init: {
    sandboxId: string;
    taskId: string;
    version: "v1" | "v2";
    params: SandboxParams;
    image: ImageDescription;
    jwt: string;
    tags: Record<string, string>;
  }): Promise<EmulatedSandbox> {
    const dir = join(this.#opts.root, init.sandboxId);
    const workspace = join(dir, "workspace");
    await mkdir(workspace, { recursive: true });
    // Boxes may run as another (unprivileged) uid: it must be able to traverse to its mounts.
    await chmod(dir, 0o711);
    this.#lastCreatedAt = Math.max(Date.now() / 1000, this.#lastCreatedAt + 0.001);
    const sb = new EmulatedSandbox({ ...init, createdAt: this.#lastCreatedAt, dir });
    const { params } = init;
    const limits: BoxLimits = {
      memoryMb: params.memoryLimitMiB ?? params.memoryMiB,
      cpuCores: params.cpuLimit ?? params.cpu,
      pidsMax: this.#opts.pidsMax,
    };
    let box: Box;
    try {
      box = await this.#opts.createBox({
        id: init.sandboxId.toLowerCase().replace(/[^a-z0-9-]/g, "-"),
        dir: join(dir, "box"),
        mounts: [
          { host: workspace, path: "/workspace", writable: true },
          { host: this.#opts.checkoutDir, path: "/opt/longshot" },
          { host: dirname(realpathSync(process.execPath)), path: "/usr/local/bin" },
        ],
        limits,
        isolation: this.#opts.isolation,
      });
    } catch (err) {
      // FAILED_PRECONDITION, not INTERNAL: the SDK would retry INTERNAL, and a host without isolation stays so.
      await rm(dir, { recursive: true, force: true });
      throw precondition(`the emulator cannot create a box: ${(err as Error).message}`);
    }
    if (box.uid !== undefined && box.uid !== process.getuid?.()) {
      await chown(workspace, box.uid, box.gid ?? box.uid);
    }
    this.sandboxes.set(sb.sandboxId, sb);
    this.byTask.set(sb.taskId, sb);
    sb.attach(box, limits, params.timeoutSecs * 1000, () => {
      void sb.finish({ status: GenericStatus.TIMEOUT, exitcode: 0, exception: "Sandbox timed out" });
    });
    if (params.command.length > 0) {
      const entry = await sb.spawn("entrypoint", params.command, {
        env: sb.envFor({}),
        stdout: "pipe",
        stderr: "pipe",
      });
      sb.entry = entry;
      void entry.exited.then((exit) => {
        const code = exit.code ?? 128 + (exit.signal ?? 0);
        void sb.finish({
          status: code === 0 ? GenericStatus.SUCCESS : GenericStatus.FAILURE,
          exitcode: code,
          exception: code === 0 ? "" : `entrypoint exited with ${code}`,
        });
      });
    }
    return sb;
  }

  /** Terminates every sandbox still running (status TERMINATED) and waits for their cleanup. */
  async stopAll(): Promise<void> {
    await Promise.all(
      [...this.sandboxes.values()].map((sb) =>
        sb.finish({ status: GenericStatus.TERMINATED, exitcode: 0, exception: "emulator stopped" }),
      ),
    );
  }
}
