import type { SweepCheck } from "@longshot/contracts";
import type { RepoMirror } from "@longshot/git";
import type { SandboxProvider } from "./provider.ts";

/**
 * The check set of a target: what the reconciler's sweeps run on the base branch and what the merge queue
 * runs on every candidate tree before it lands. One definition, so `main` is held to the same checks before
 * and after a landing.
 */

/** A check command of the check set, run with `sh -c` in a sandbox's checkout. */
export interface PlannedCheck {
  name: "install" | "build" | "typecheck" | "test";
  command: string;
}

/** Commands configured by the operator (SWEEP_*_CMD); each overrides detection for its check. */
export interface CheckOverrides {
  install?: string | undefined;
  build?: string | undefined;
  typecheck?: string | undefined;
  test?: string | undefined;
}

/** The npm placeholder test script (`npm init`'s default), which is not a real test suite. */
const NPM_PLACEHOLDER_TEST = /no test specified/;

/**
 * Decides which checks run, from the target's package.json (or none) and lockfiles present:
 * - install: only when the package declares dependencies or devDependencies — `pnpm install --frozen-lockfile`
 *   with a pnpm lock, `yarn install --frozen-lockfile` with a yarn lock, `npm ci` with a package-lock, else
 *   `npm install --no-audit --no-fund`;
 * - build / typecheck / test: the package's `build`, `typecheck` and `test` scripts, run through the same
 *   package manager (`npm run <script>`); the npm placeholder test script counts as no tests;
 * - overrides replace detection per check ("" disables a check).
 * Conflict markers are always checked separately ({@link checkCommit}). Pure.
 */
export function planChecks(
  pkg: unknown,
  lockfiles: { pnpm: boolean; yarn: boolean; npm: boolean },
  overrides: CheckOverrides,
): PlannedCheck[] {
  const p = (pkg ?? {}) as {
    scripts?: Record<string, string>;
    dependencies?: object;
    devDependencies?: object;
  };
  const scripts = p.scripts ?? {};
  const hasDeps = Object.keys(p.dependencies ?? {}).length + Object.keys(p.devDependencies ?? {}).length > 0;
  const pm = lockfiles.pnpm ? "pnpm" : lockfiles.yarn ? "yarn" : "npm";
  const install = lockfiles.pnpm
    ? "pnpm install --frozen-lockfile"
    : lockfiles.yarn
      ? "yarn install --frozen-lockfile"
      : lockfiles.npm
        ? "npm ci --no-audit --no-fund"
        : "npm install --no-audit --no-fund";
  const detected: Record<PlannedCheck["name"], string | undefined> = {
    install: pkg && hasDeps ? install : undefined,
    build: scripts.build ? `${pm} run build` : undefined,
    typecheck: scripts.typecheck ? `${pm} run typecheck` : undefined,
    test: scripts.test && !NPM_PLACEHOLDER_TEST.test(scripts.test) ? `${pm} run test` : undefined,
  };
  const out: PlannedCheck[] = [];
  for (const name of ["install", "build", "typecheck", "test"] as const) {
    const command = overrides[name] !== undefined ? overrides[name] : detected[name];
    if (command) out.push({ name, command });
  }
  return out;
}

/** Plans the check set of `commit` from its package.json and lockfiles, read out of `mirror`. */
export async function planChecksAt(
  mirror: RepoMirror,
  commit: string,
  overrides: CheckOverrides,
): Promise<PlannedCheck[]> {
  const pkgText = await mirror.readFile(commit, "package.json");
  let pkg: unknown;
  try {
    pkg = pkgText === undefined ? undefined : JSON.parse(pkgText);
  } catch {
    pkg = undefined;
  }
  const [pnpm, yarn, npm] = await Promise.all(
    ["pnpm-lock.yaml", "yarn.lock", "package-lock.json"].map(
      async (f) => (await mirror.readFile(commit, f)) !== undefined,
    ),
  );
  return planChecks(pkg, { pnpm: !!pnpm, yarn: !!yarn, npm: !!npm }, overrides);
}

/** Settings of {@link checkCommit}. */
export interface CommitCheckOptions {
  overrides: CheckOverrides;
  /** Timeout of each check, in ms (a check killed at its timeout fails). */
  timeoutMs: number;
  /** Whether the install check may use the network (SWEEP_INSTALL_NETWORK); the others never can. */
  installNetwork: boolean;
  /** Labels of the sandbox (purpose, runId, …). */
  labels?: Record<string, string>;
  /** Aborting kills the running check and ends the sandbox; `checkCommit` then rejects with the reason. */
  signal?: AbortSignal;
}

/** Outcome of {@link checkCommit}: green when every check passed and no conflict markers were found. */
export interface CommitCheckResult {
  green: boolean;
  /** The checks run, in order, the conflict-marker check last. */
  checks: SweepCheck[];
  conflictFiles: string[];
  durationMs: number;
}

/**
 * Runs the check set on `commit` (which the provider's mirror of `repo` must hold under `ref`, a full ref such
 * as `refs/heads/main` or `refs/longshot/candidates/<id>`):
 * 1. plans the checks from that commit's package.json and lockfiles ({@link planChecksAt});
 * 2. runs them in one sandbox of `provider` on a checkout of the commit — agent-written code and its install
 *    scripts never run on the host: no network except for the install where allowed, the sandbox's limits,
 *    each check killed after `timeoutMs`, a failing install ends the run;
 * 3. looks for conflict markers in the commit's tracked text files, in the mirror (no sandbox touches it).
 * Throws what `runChecks` throws (the backend cannot work, or `signal` aborted) and GitError for mirror reads.
 */
export async function checkCommit(
  provider: SandboxProvider,
  target: { repo: string; ref: string; commit: string },
  options: CommitCheckOptions,
): Promise<CommitCheckResult> {
  const started = Date.now();
  const mirror = provider.mirror(target.repo);
  const planned = await planChecksAt(mirror, target.commit, options.overrides);
  const checks =
    planned.length === 0
      ? []
      : await provider.runChecks({
          repo: target.repo,
          ref: target.ref,
          commit: target.commit,
          timeoutMs: options.timeoutMs,
          checks: planned.map((c) => ({
            ...c,
            network: c.name === "install" && options.installNetwork ? "host" : "none",
          })),
          stopAfterFailureOf: ["install"],
          labels: options.labels ?? {},
          ...(options.signal ? { signal: options.signal } : {}),
        });
  const markerStarted = Date.now();
  const conflictFiles = await mirror.conflictMarkers(target.commit);
  checks.push({
    name: "conflict-markers",
    command: "git grep -I conflict markers",
    ok: conflictFiles.length === 0,
    exitCode: conflictFiles.length === 0 ? 0 : 1,
    output: conflictFiles.join("\n"),
    durationMs: Date.now() - markerStarted,
  });
  return { green: checks.every((c) => c.ok), checks, conflictFiles, durationMs: Date.now() - started };
}
