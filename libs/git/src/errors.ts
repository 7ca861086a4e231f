/**
 * A git command failed. `args` and `stderr` are redacted: anything that looks like credentials in a URL
 * (`https://user:token@host`) is replaced by `***`. `exitCode` is null when git could not be started or was
 * killed (timeout).
 */
export class GitError extends Error {
  override name = "GitError";
  readonly args: readonly string[];
  readonly exitCode: number | null;
  readonly stderr: string;
  constructor(
    message: string,
    details: { args: readonly string[]; exitCode: number | null; stderr: string },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.args = details.args;
    this.exitCode = details.exitCode;
    this.stderr = details.stderr;
  }
}

/** A ref (branch, tag, sha) that a function needs does not exist in the repository. */
export class GitRefNotFoundError extends Error {
  override name = "GitRefNotFoundError";
  readonly ref: string;
  constructor(ref: string, dir: string, options?: { cause?: unknown }) {
    super(`ref not found: ${ref} (in ${dir})`, options);
    this.ref = ref;
  }
}

/**
 * A push was refused. `rejected` is true when the remote refused because it moved (non-fast-forward /
 * fetch first); false when the remote rejected it for another reason (hook, dirty working tree of a
 * non-bare target, permissions).
 */
export class GitPushError extends Error {
  override name = "GitPushError";
  readonly ref: string;
  readonly rejected: boolean;
  readonly reason: string;
  constructor(ref: string, reason: string, rejected: boolean, options?: { cause?: unknown }) {
    super(`push of ${ref} refused: ${reason}`, options);
    this.ref = ref;
    this.reason = reason;
    this.rejected = rejected;
  }
}

/** A function was called in a way it refuses by design (e.g. force-pushing a base branch). */
export class GitUsageError extends Error {
  override name = "GitUsageError";
}
