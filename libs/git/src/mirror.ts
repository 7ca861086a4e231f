import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { GitPushError, GitRefNotFoundError, GitUsageError } from "./errors.ts";
import { type GitEnvOptions, git, gitFailure, redact, runGit, splitZ } from "./exec.ts";

/**
 * Environment that gives git an HTTP token for https remotes without putting it in argv or a config file:
 * `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0` = `http.extraHeader: Authorization: Basic
 * base64("x-access-token:<token>")` (the form GitHub, GitLab and Gitea accept for tokens; see
 * git-config(1) "GIT_CONFIG_COUNT" and "http.extraHeader"). Empty for no token.
 */
export function gitTokenEnv(token: string | undefined): Record<string, string> {
  if (!token) return {};
  const basic = Buffer.from(`x-access-token:${token}`).toString("base64");
  return {
    GIT_CONFIG_COUNT: "1",
    GIT_CONFIG_KEY_0: "http.extraHeader",
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}`,
  };
}

/** Branch names a mirror never pushes to (the base branch of the push, `main`, `master`). */
function isBaseName(branch: string, base: string): boolean {
  return branch === base || branch === "main" || branch === "master";
}

/**
 * A bare mirror of a target repository, private to one service (never shown to a sandbox): the source of
 * sandbox workspaces (clones and bundles), where branches handed back by sandboxes (bundles) are verified,
 * and where they are pushed to the target from. Its `refs/heads/*` follow the target's branches; branches
 * brought back by sandboxes live under `refs/longshot/incoming/*` until pushed. Credentials come only
 * through `env` (see {@link gitTokenEnv}).
 */
export interface RepoMirror {
  /** The bare repository's directory. */
  readonly dir: string;
  /** The target (path or URL) it mirrors. */
  readonly source: string;
  /**
   * Fetches every branch of the target (`+refs/heads/*:refs/heads/*`, pruned). Concurrent calls share one
   * fetch, plus one more for callers that arrived while it ran (so each caller sees the target at least as
   * new as when it called). Throws GitError.
   */
  sync(): Promise<void>;
  /** The commit `ref` names in the mirror (e.g. `refs/heads/main`). Throws GitRefNotFoundError. */
  resolve(ref: string): Promise<string>;
  /**
   * Clones the mirror into `dest` over git's pack protocol (`--no-local`: no hardlinks into the mirror, so
   * a sandbox owning `dest` cannot touch the mirror's objects). The clone's `refs/remotes/origin/*` are the
   * mirror's branches; `refs` outside `refs/heads/` (e.g. `refs/longshot/candidates/<id>`) are fetched into
   * the clone under their own names. With `detach`, HEAD is detached at that commit. Throws GitError.
   */
  cloneInto(dest: string, opts?: { detach?: string; refs?: string[] }): Promise<void>;
  /** Writes a bundle of `refs` (full history, no prerequisites) to `path`, for seeding remote sandboxes. */
  bundle(path: string, refs: string[]): Promise<void>;
  /**
   * Fetches `refs/heads/<branch>` out of an untrusted bundle file into `refs/longshot/incoming/<name>`, with
   * object checks on (`transfer.fsckObjects`), and returns its commit. Throws GitError for a malformed
   * bundle, a missing branch or missing prerequisites.
   */
  importBundle(bundlePath: string, branch: string, name: string): Promise<string>;
  /**
   * Force-pushes a ref of the mirror to `refs/heads/<branch>` of the target. Refuses (GitUsageError) the
   * base branch, `main` and `master`: those move only through the merge queue, never forced. Throws
   * GitPushError when the target refuses.
   */
  pushBranch(ref: string, branch: string, base: string): Promise<void>;
  /** Deletes a ref of the mirror (e.g. an incoming branch after it was pushed); missing refs are fine. */
  deleteRef(ref: string): Promise<void>;
  /** The content of `path` at `commit`, or undefined when it does not exist there. */
  readFile(commit: string, path: string): Promise<string | undefined>;
  /** Tracked text files at `commit` with a line starting with `<<<<<<< ` or `>>>>>>> `. */
  conflictMarkers(commit: string): Promise<string[]>;
}

/**
 * Mirrors under `rootDir` (one bare repository per target, `<rootDir>/<sha1(source)[0..12]>.git`), created
 * on first use. `env` is passed to every git command that talks to a target (credentials).
 */
export function createMirrors(
  rootDir: string,
  env: GitEnvOptions["env"] = {},
): {
  get(source: string): RepoMirror;
} {
  const mirrors = new Map<string, RepoMirror>();
  return {
    get(source) {
      let m = mirrors.get(source);
      if (!m) {
        const dir = join(rootDir, `${createHash("sha1").update(source).digest("hex").slice(0, 12)}.git`);
        m = openMirror(source, dir, env);
        mirrors.set(source, m);
      }
      return m;
    },
  };
}

function openMirror(source: string, dir: string, env: GitEnvOptions["env"]): RepoMirror {
  const net: GitEnvOptions = { env };
  let running: Promise<void> | undefined;
  let queued: Promise<void> | undefined;

  const fetchOnce = async (): Promise<void> => {
    if (!existsSync(join(dir, "HEAD"))) {
      await mkdir(dirname(dir), { recursive: true });
      await git(dirname(dir), ["clone", "--bare", "-q", "--", source, dir], net);
    }
    await git(dir, ["fetch", "-q", "--prune", "origin", "+refs/heads/*:refs/heads/*"], net);
  };

  const sync = (): Promise<void> => {
    if (!running) {
      running = fetchOnce().finally(() => {
        running = undefined;
      });
      return running;
    }
    // A fetch is running: it may have started before the caller's change reached the target.
    queued ??= running
      .catch(() => undefined)
      .then(() => {
        queued = undefined;
        return sync();
      });
    return queued;
  };

  return {
    dir,
    source,
    sync,
    async resolve(ref) {
      const r = await runGit(dir, ["rev-parse", "--verify", "--quiet", `${ref}^{commit}`]);
      if (r.code !== 0) throw new GitRefNotFoundError(ref, dir);
      return r.stdout.trim();
    },
    async cloneInto(dest, opts = {}) {
      await mkdir(dirname(dest), { recursive: true });
      await git(dirname(dest), ["clone", "-q", "--no-local", "--", dir, dest]);
      const extra = (opts.refs ?? []).filter((r) => r.startsWith("refs/") && !r.startsWith("refs/heads/"));
      if (extra.length)
        await git(dest, ["fetch", "-q", "--no-tags", "origin", ...extra.map((r) => `+${r}:${r}`)]);
      if (opts.detach) await git(dest, ["checkout", "-q", "--detach", opts.detach]);
    },
    async bundle(path, refs) {
      await git(dir, ["bundle", "create", "-q", path, ...refs]);
    },
    async importBundle(bundlePath, branch, name) {
      const into = `refs/longshot/incoming/${name}`;
      await git(dir, [
        "-c",
        "transfer.fsckObjects=true",
        "fetch",
        "-q",
        "--no-tags",
        "--no-write-fetch-head",
        bundlePath,
        `+refs/heads/${branch}:${into}`,
      ]);
      return (await git(dir, ["rev-parse", "--verify", `${into}^{commit}`])).trim();
    },
    async pushBranch(ref, branch, base) {
      if (isBaseName(branch, base)) throw new GitUsageError(`refusing to force-push base branch ${branch}`);
      const args = ["push", "--porcelain", "origin", `+${ref}:refs/heads/${branch}`];
      const result = await runGit(dir, args, net);
      if (result.code === 0) return;
      const refused = result.stdout.split("\n").find((l) => l.startsWith("!\t"));
      if (refused) {
        const summary = refused.split("\t")[2] ?? refused;
        throw new GitPushError(branch, redact(summary.trim()), summary.startsWith("[rejected]"));
      }
      throw gitFailure(args, result);
    },
    async deleteRef(ref) {
      await runGit(dir, ["update-ref", "-d", ref]);
    },
    async readFile(commit, path) {
      const r = await runGit(dir, ["show", `${commit}:${path}`]);
      return r.code === 0 ? r.stdout : undefined;
    },
    async conflictMarkers(commit) {
      const args = ["grep", "-I", "-l", "-z", "-E", "-e", "^(<<<<<<<|>>>>>>>) ", commit];
      const r = await runGit(dir, args);
      if (r.code === 1) return [];
      if (r.code !== 0) throw gitFailure(args, r);
      return splitZ(r.stdout).map((p) => p.slice(commit.length + 1));
    },
  };
}
