/**
 * The emulator's stand-in for `modal-sandbox-fs-tools`, the in-container helper behind `sb.filesystem.*`.
 *
 * The SDK implements every filesystem call as an exec of `[FS_TOOLS_PATH, <json command>]` (see
 * `SandboxFilesystem` and `make*Command` in `modal/dist/index.js` 0.11.1): `{"ReadFile":{"path"}}` streams the file
 * to stdout, `{"WriteFile":{"path"}}` writes stdin to the file (creating parents), `MakeDirectory`, `Remove`,
 * `Stat` and `ListFiles` do what they say. A failure exits non-zero with one JSON line on stderr,
 * `{"error_kind": …, "message": …}`, whose `error_kind` the SDK maps to its `SandboxFilesystem*Error` classes.
 *
 * {@link fsToolArgv} turns such a command into an argv that runs INSIDE the sandbox's box (POSIX `sh` and
 * coreutils; `Stat`/`ListFiles` use the sandbox's `/usr/local/bin/node`), so paths resolve as the sandbox sees
 * them and a symlink planted by a sandboxed process can never make the emulator itself open a host file.
 */
/** argv[0] of the SDK's filesystem execs (`SANDBOX_FS_TOOLS_PATH` in the SDK). */
export const FS_TOOLS_PATH = "/__modal/.bin/modal-sandbox-fs-tools";

/** An fs-tools command the emulator cannot run (bad JSON, unknown operation). */
export class FsToolCommandError extends Error {
  override readonly name = "FsToolCommandError";
}

const SH_PRELUDE = `
err() { printf '{"error_kind":"%s","message":"%s"}\\n' "$1" "$2" >&2; exit 1; }
kind_of() {
  case "$1" in
    *"No such file"*) echo NotFound ;;
    *"Not a directory"*) echo NotDirectory ;;
    *"File exists"*) echo PathAlreadyExists ;;
    *"Directory not empty"*) echo DirectoryNotEmpty ;;
    *"Permission denied"*|*"Read-only file system"*|*"Operation not permitted"*) echo PermissionDenied ;;
    *) echo Other ;;
  esac
}
fail_with() { k=$(kind_of "$1"); err "$k" "$(printf '%s' "$1" | tail -n 1 | tr -d '"\\\\')"; }
p="$1"
`;

const READ_FILE = `${SH_PRELUDE}
[ -e "$p" ] || err NotFound "No such file or directory"
[ -d "$p" ] && err IsDirectory "Is a directory"
exec cat -- "$p"
`;

const WRITE_FILE = `${SH_PRELUDE}
[ -d "$p" ] && err IsDirectory "Is a directory"
d=$(dirname -- "$p")
if [ ! -d "$d" ]; then
  out=$(mkdir -p -- "$d" 2>&1) || { k=$(kind_of "$out"); [ "$k" = PathAlreadyExists ] && k=NotDirectory; err "$k" "Cannot create parent directory"; }
fi
out=$( ( : > "$p" ) 2>&1) || fail_with "$out"
exec cat > "$p"
`;

const MAKE_DIRECTORY = `${SH_PRELUDE}
if [ "$2" = parents ]; then
  [ -d "$p" ] && exit 0
  out=$(mkdir -p -- "$p" 2>&1) || fail_with "$out"
else
  [ -e "$p" ] && err PathAlreadyExists "File exists"
  out=$(mkdir -- "$p" 2>&1) || fail_with "$out"
fi
`;

const REMOVE = `${SH_PRELUDE}
[ -e "$p" ] || [ -L "$p" ] || err NotFound "No such file or directory"
if [ -d "$p" ] && [ ! -L "$p" ]; then
  if [ "$2" = recursive ]; then out=$(rm -rf -- "$p" 2>&1) || fail_with "$out"
  else out=$(rmdir -- "$p" 2>&1) || fail_with "$out"; fi
else
  out=$(rm -f -- "$p" 2>&1) || fail_with "$out"
fi
`;

/** Node script for Stat / ListFiles: prints the SDK's raw `FileInfo` JSON (snake_case keys). */
const STAT_JS = `
const fs = require("node:fs"), path = require("node:path");
const [op, p] = process.argv.slice(1);
const fail = (kind, message) => { process.stderr.write(JSON.stringify({ error_kind: kind, message }) + "\\n"); process.exit(1); };
const names = (file) => { const m = new Map(); try { for (const l of fs.readFileSync(file, "utf8").split("\\n")) { const f = l.split(":"); if (f.length > 2) m.set(Number(f[2]), f[0]); } } catch {} return m; };
const users = names("/etc/passwd"), groups = names("/etc/group");
const perms = (mode) => ["r","w","x","r","w","x","r","w","x"].map((c, i) => (mode & (0o400 >> i) ? c : "-")).join("");
const info = (full) => {
  const st = fs.lstatSync(full);
  const type = st.isSymbolicLink() ? "symlink" : st.isDirectory() ? "directory" : "file";
  return { name: path.basename(full), path: full, type, size: st.size, mode: st.mode & 0o7777, permissions: perms(st.mode),
    owner: users.get(st.uid) ?? String(st.uid), group: groups.get(st.gid) ?? String(st.gid),
    modified_time: Math.floor(st.mtimeMs / 1000), symlink_target: type === "symlink" ? fs.readlinkSync(full) : null };
};
const kind = (e) => ({ ENOENT: "NotFound", ENOTDIR: "NotDirectory", EACCES: "PermissionDenied", EPERM: "PermissionDenied" })[e.code] ?? "Other";
try {
  if (op === "Stat") process.stdout.write(JSON.stringify(info(p)));
  else {
    const st = fs.statSync(p);
    if (!st.isDirectory()) fail("NotDirectory", "Not a directory");
    const entries = fs.readdirSync(p).sort().map((n) => info(path.join(p, n)));
    process.stdout.write(JSON.stringify(entries));
  }
} catch (e) { fail(kind(e), e.message); }
`;

const sh = (script: string, ...args: string[]): string[] => [
  "/bin/sh",
  "-c",
  script,
  "modal-sandbox-fs-tools",
  ...args,
];

/**
 * The argv that performs one fs-tools command inside a box. `json` is argv[1] of the SDK's exec, e.g.
 * `{"ReadFile":{"path":"/workspace/a.txt"}}`. Throws {@link FsToolCommandError} for malformed or unsupported
 * commands (`Watch` is not supported).
 */
export function fsToolArgv(json: string | undefined): string[] {
  let cmd: Record<string, Record<string, unknown>>;
  try {
    cmd = JSON.parse(json ?? "") as Record<string, Record<string, unknown>>;
  } catch (err) {
    throw new FsToolCommandError(`fs-tools command is not JSON: ${json}`, { cause: err });
  }
  const [op, args] = Object.entries(cmd)[0] ?? [];
  const path = typeof args?.path === "string" ? args.path : undefined;
  if (!op || !path?.startsWith("/")) throw new FsToolCommandError(`bad fs-tools command: ${json}`);
  switch (op) {
    case "ReadFile":
      return sh(READ_FILE, path);
    case "WriteFile":
      return sh(WRITE_FILE, path);
    case "MakeDirectory":
      return sh(MAKE_DIRECTORY, path, args?.parents ? "parents" : "");
    case "Remove":
      return sh(REMOVE, path, args?.recursive ? "recursive" : "");
    case "Stat":
    case "ListFiles":
      return ["/usr/local/bin/node", "-e", STAT_JS, op, path];
    default:
      // The SDK maps NotSupported to InvalidError (e.g. Watch, which the emulator does not implement).
      return sh(
        `${SH_PRELUDE}\nerr NotSupported "operation ${op.replace(/[^A-Za-z]/g, "")} is not supported by the emulator"`,
      );
  }
}
