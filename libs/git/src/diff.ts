import { git, splitZ } from "./exec.ts";

/**
 * Change statistics between two commits, artifact paths excluded (see {@link isArtifactPath}).
 * `filesChanged` lists repo-relative paths; `filesCreated` counts added files; `filesModified` counts
 * modified, type-changed and deleted files; lines are counted from text diffs (binary files add 0).
 */
export interface DiffStats {
  filesChanged: string[];
  filesCreated: number;
  filesModified: number;
  linesAdded: number;
  linesRemoved: number;
}

const ARTIFACT_DIRS = new Set(["node_modules", "dist", "build", ".next", "out", ".turbo"]);
const LOCK_FILES = new Set([
  "package-lock.json",
  "npm-shrinkwrap.json",
  "pnpm-lock.yaml",
  "yarn.lock",
  "bun.lock",
  "bun.lockb",
  "Cargo.lock",
  "poetry.lock",
  "uv.lock",
  "Gemfile.lock",
  "composer.lock",
  "go.sum",
]);

/**
 * True for build output and generated files that should not count as a task's work: any path inside a
 * `node_modules`, `dist`, `build`, `.next`, `out` or `.turbo` directory, `*.tsbuildinfo`, and lock files
 * (package-lock.json, pnpm-lock.yaml, yarn.lock, bun.lock(b), Cargo.lock, poetry.lock, uv.lock, …).
 */
export function isArtifactPath(path: string): boolean {
  const parts = path.split("/");
  const name = parts[parts.length - 1] ?? "";
  if (name.endsWith(".tsbuildinfo") || LOCK_FILES.has(name)) return true;
  return parts.slice(0, -1).some((part) => ARTIFACT_DIRS.has(part));
}

/**
 * Diff statistics from `fromRef` to `toRef` (default HEAD), a two-dot comparison of the two trees with
 * rename detection off (a rename counts as one deletion and one creation). Throws GitError for unknown refs.
 */
export async function diffStats(dir: string, fromRef: string, toRef = "HEAD"): Promise<DiffStats> {
  const range = [fromRef, toRef, "--"];
  const nameStatus = splitZ(await git(dir, ["diff", "--no-renames", "--name-status", "-z", ...range]));
  const numstat = splitZ(await git(dir, ["diff", "--no-renames", "--numstat", "-z", ...range]));

  const stats: DiffStats = {
    filesChanged: [],
    filesCreated: 0,
    filesModified: 0,
    linesAdded: 0,
    linesRemoved: 0,
  };
  for (let i = 0; i + 1 < nameStatus.length; i += 2) {
    const status = nameStatus[i] ?? "";
    const path = nameStatus[i + 1] ?? "";
    if (isArtifactPath(path)) continue;
    stats.filesChanged.push(path);
    if (status.startsWith("A")) stats.filesCreated += 1;
    else stats.filesModified += 1;
  }
  // numstat -z without renames: "<added>\t<removed>\t<path>" per record ("-\t-" for binary files).
  for (const record of numstat) {
    const [added = "", removed = "", ...rest] = record.split("\t");
    const path = rest.join("\t");
    if (isArtifactPath(path)) continue;
    stats.linesAdded += Number.parseInt(added, 10) || 0;
    stats.linesRemoved += Number.parseInt(removed, 10) || 0;
  }
  return stats;
}
