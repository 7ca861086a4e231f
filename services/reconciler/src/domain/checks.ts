/** A check command of a sweep, run with `sh -c` in the scratch checkout. */
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
 * Decides which checks a sweep runs, from the target's package.json (or none) and lockfiles present:
 * - install: only when the package declares dependencies or devDependencies — `pnpm install --frozen-lockfile`
 *   with a pnpm lock, `yarn install --frozen-lockfile` with a yarn lock, `npm ci` with a package-lock, else
 *   `npm install --no-audit --no-fund`;
 * - build / typecheck / test: the package's `build`, `typecheck` and `test` scripts, run through the same
 *   package manager (`npm run <script>`); the npm placeholder test script counts as no tests;
 * - overrides replace detection per check ("" disables a check).
 * Conflict markers are always checked separately. Pure; unit-tested.
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
