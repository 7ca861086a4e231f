import { execFile, spawn } from "node:child_process";
import { GitError } from "./errors.ts";

/**
 * Options for one git invocation. `env` is merged over the process environment (use it for credentials:
 * e.g. `GIT_ASKPASS` or `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0` = `http.extraHeader`, so
 * that secrets are never in argv or a config file). `timeoutMs` defaults to 10 minutes.
 */
export interface GitEnvOptions {
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

/** Exit code and output of one git invocation. */
export interface GitRunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const MAX_BUFFER_BYTES = 256 * 1024 * 1024;

/**
 * Variables that would redirect git to another repository than `cwd`. They leak in when a process runs
 * inside a git hook, so they are always removed.
 */
const LOCATION_VARS = [
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_INDEX_FILE",
  "GIT_OBJECT_DIRECTORY",
  "GIT_ALTERNATE_OBJECT_DIRECTORIES",
  "GIT_COMMON_DIR",
  "GIT_NAMESPACE",
  "GIT_PREFIX",
];

/** Replaces credentials embedded in URLs (`scheme://user:secret@host`) by `***`. */
export function redact(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi, "$1***@");
}

/**
 * The commit identity used for commits made by this library: env `GIT_COMMIT_NAME` / `GIT_COMMIT_EMAIL`,
 * defaults "Longshot" / "longshot@localhost". It is passed per command and never written to git config.
 */
export function commitIdentity(): { name: string; email: string } {
  return {
    name: process.env.GIT_COMMIT_NAME || "Longshot",
    email: process.env.GIT_COMMIT_EMAIL || "longshot@localhost",
  };
}

/** `-c` arguments for commands that create commits (identity, no signing prompts). */
export function identityArgs(): string[] {
  const { name, email } = commitIdentity();
  return ["-c", `user.name=${name}`, "-c", `user.email=${email}`, "-c", "commit.gpgsign=false"];
}

function childEnv(extra: GitEnvOptions["env"]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of LOCATION_VARS) delete env[key];
  for (const [key, value] of Object.entries(extra ?? {})) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  // Never block on a credential prompt; stable (English) messages for the few we parse.
  env.GIT_TERMINAL_PROMPT = "0";
  env.LC_ALL = "C";
  env.LANGUAGE = "C";
  return env;
}

/**
 * Runs `git <args>` in `cwd` and resolves with its exit code and output whatever the exit code.
 * Rejects with {@link GitError} only when git cannot be started or is killed (timeout).
 */
export function runGit(
  cwd: string,
  args: readonly string[],
  options: GitEnvOptions = {},
): Promise<GitRunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      args,
      {
        cwd,
        env: childEnv(options.env),
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        maxBuffer: MAX_BUFFER_BYTES,
        encoding: "utf8",
        windowsHide: true,
      },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") {
          const safeArgs = args.map(redact);
          const why = error.killed
            ? `killed (${error.signal ?? "timeout"})`
            : String(error.code ?? error.message);
          reject(
            new GitError(
              `git ${safeArgs.join(" ")} failed to run: ${why}`,
              { args: safeArgs, exitCode: null, stderr: redact(stderr ?? "") },
              { cause: error },
            ),
          );
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
  });
}

/** Builds the {@link GitError} for a finished command with an unexpected exit code. */
export function gitFailure(args: readonly string[], result: GitRunResult): GitError {
  const safeArgs = args.map(redact);
  const stderr = redact(result.stderr.trim() || result.stdout.trim());
  const firstLines = stderr.split("\n").slice(0, 6).join("\n");
  return new GitError(`git ${safeArgs.join(" ")} failed (exit ${result.code}): ${firstLines}`, {
    args: safeArgs,
    exitCode: result.code,
    stderr,
  });
}

/**
 * Runs `git <args>` in `cwd` and resolves with stdout. Rejects with {@link GitError} on a non-zero exit.
 */
export async function git(
  cwd: string,
  args: readonly string[],
  options: GitEnvOptions = {},
): Promise<string> {
  const result = await runGit(cwd, args, options);
  if (result.code !== 0) throw gitFailure(args, result);
  return result.stdout;
}

/** Splits NUL-separated git output (`-z`) into its non-empty records. */
export function splitZ(output: string): string[] {
  return output.split("\0").filter((part) => part.length > 0);
}

/** Output of {@link runGitCapped}: stdout cut at the byte limit (`truncated` then true; git was stopped). */
export interface GitCappedResult extends GitRunResult {
  truncated: boolean;
}

/** Most bytes of stderr kept by {@link runGitCapped}. */
const CAPPED_STDERR_BYTES = 64 * 1024;

/**
 * Runs `git <args>` in `cwd` keeping at most `maxBytes` of stdout (UTF-8 text; a multi-byte character cut at the
 * limit is dropped): once more arrives, git is killed and `truncated` is true (its exit code is then -1). For
 * commands whose output size a caller does not control (grep, a blob of unknown size). `timeoutMs` defaults to
 * 30 s. Rejects with {@link GitError} only when git cannot be started or times out.
 */
export function runGitCapped(
  cwd: string,
  args: readonly string[],
  options: { maxBytes: number; timeoutMs?: number; env?: GitEnvOptions["env"] },
): Promise<GitCappedResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, {
      cwd,
      env: childEnv(options.env),
      stdio: ["ignore", "pipe", "pipe"],
      windowsHide: true,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let truncated = false;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs ?? 30_000);
    child.stdout.on("data", (d: Buffer) => {
      if (truncated) return;
      const room = options.maxBytes - outBytes;
      if (d.length > room) {
        out.push(d.subarray(0, room));
        outBytes += room;
        truncated = true;
        child.kill("SIGKILL");
        return;
      }
      out.push(d);
      outBytes += d.length;
    });
    child.stderr.on("data", (d: Buffer) => {
      if (errBytes >= CAPPED_STDERR_BYTES) return;
      err.push(d.subarray(0, CAPPED_STDERR_BYTES - errBytes));
      errBytes += d.length;
    });
    const safeArgs = () => args.map(redact);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(
        new GitError(
          `git ${safeArgs().join(" ")} failed to run: ${e.message}`,
          { args: safeArgs(), exitCode: null, stderr: "" },
          { cause: e },
        ),
      );
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString("utf8");
      if (timedOut && !truncated) {
        reject(
          new GitError(`git ${safeArgs().join(" ")} failed to run: killed (timeout)`, {
            args: safeArgs(),
            exitCode: null,
            stderr: redact(stderr),
          }),
        );
        return;
      }
      // A character cut at the limit decodes to U+FFFD at the very end: drop it.
      let stdout = Buffer.concat(out).toString("utf8");
      if (truncated && stdout.endsWith("\uFFFD")) stdout = stdout.slice(0, -1);
      resolve({ code: truncated ? -1 : (code ?? -1), stdout, stderr, truncated });
    });
  });
}
