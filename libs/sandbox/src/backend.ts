import type { Readable } from "node:stream";
import type { RepoMirror } from "@longshot/git";
import type { BoxLimits } from "./box.ts";

/**
 * What a sandbox backend guarantees, so callers (and the provider contract suite) can tell providers apart
 * by configuration alone.
 */
export interface SandboxCapabilities {
  /** How processes are contained: `bwrap` (namespaces + cgroups), `modal` (Modal's gVisor sandboxes), `none`. */
  isolation: "bwrap" | "modal" | "none";
  /**
   * Network of a worker sandbox: `none` (no network at all; the model is reached through the stdio relay) or
   * `host` (unsafe-local: the host's network).
   */
  network: "none" | "host";
  /** Limits the backend enforces. */
  limits: Array<keyof BoxLimits>;
  /** Longest a sandbox may live, in ms (Modal: 24 h). */
  maxRuntimeMs: number;
  snapshots: boolean;
  gpu: boolean;
}

/** What to create. `labels` become tags (Modal) or registry fields (local), e.g. runId, taskId, purpose. */
export interface SandboxSpec {
  /** Unique, `[a-z0-9-]`, at most 63 chars. */
  id: string;
  labels: Record<string, string>;
  limits: BoxLimits;
  /** Hard lifetime of the whole sandbox, in ms (the backend terminates it after that, whatever runs). */
  timeoutMs: number;
  /**
   * Whether processes may ask for the host's network (`exec` with `network: "host"`: dependency installs of
   * a sweep, where the user allows it). Without it such an exec is refused. On Modal the network is open
   * from creation and closed for good before the first process without network starts.
   */
  installNetwork?: boolean;
}

/** Options of one process started in a sandbox. */
export interface SandboxExecOptions {
  argv: string[];
  /** Working directory inside the sandbox. */
  cwd: string;
  /** The whole environment (nothing is inherited from the host). */
  env: Record<string, string>;
  /** `none` (default) or `host` (dependency installs, where the user allows it). */
  network?: "none" | "host";
  /** Kill the process after this long, in ms (0 = no limit of its own). */
  timeoutMs?: number;
}

/** A process running in a sandbox. */
export interface SandboxProcess {
  stdout: Readable;
  stderr: Readable;
  /** Writes to its stdin (text, UTF-8). */
  write(text: string): void;
  /** Its exit: `code` null when killed. */
  wait(): Promise<{ code: number | null; signal?: string }>;
  kill(): void;
}

/** One live sandbox. Paths are as seen inside it. */
export interface SandboxHandle {
  readonly id: string;
  /** The writable workspace directory inside the sandbox (e.g. `/workspace`). */
  readonly workspace: string;
  /** The worker as installed in the sandbox: `node` binary, entry script, system prompt. */
  readonly worker: { node: string; entry: string; systemPrompt: string };
  /** Base environment of processes in the sandbox: its own `HOME`, `TMPDIR` and `PATH`. */
  readonly env: Record<string, string>;
  /**
   * Puts a clone of `mirror` at `<workspace>/repo` (its `refs/remotes/origin/*` = the mirror's branches),
   * detached at `detach` when given; returns the clone's path inside the sandbox. `refs`: the full refs the
   * sandbox needs (a remote sandbox is seeded with only these); refs outside `refs/heads/` are fetched as
   * themselves, so `detach` may name a commit only such a ref holds.
   */
  seedRepo(mirror: RepoMirror, opts?: { detach?: string; refs?: string[] }): Promise<string>;
  exec(opts: SandboxExecOptions): SandboxProcess;
  /**
   * Reads a regular file inside the sandbox, as the sandbox sees it (a symlink planted inside never makes
   * the host read its own files). Undefined when missing; throws when larger than `maxBytes`.
   */
  readFile(path: string, maxBytes: number): Promise<Buffer | undefined>;
  writeFile(path: string, data: string | Uint8Array): Promise<void>;
  /** The limit the sandbox hit, if any (e.g. `memory`), for a clean failure reason. */
  limitHit(): Promise<string | undefined>;
  /** Ends every process and frees everything. Idempotent; never throws. */
  terminate(): Promise<void>;
}

/** Where sandboxes come from: `local` (bubblewrap or unsafe) or `modal`. */
export interface SandboxBackend {
  readonly name: string;
  readonly capabilities: SandboxCapabilities;
  create(spec: SandboxSpec): Promise<SandboxHandle>;
  /**
   * Terminates the sandboxes a previous instance of this provider (same owner) left behind after a crash.
   * Returns how many.
   */
  reap(): Promise<number>;
}
