import { describe, expect, it } from "vitest";
import { planChecks } from "../src/checks.ts";

const noLocks = { pnpm: false, yarn: false, npm: false };

describe("planChecks", () => {
  it("given a package without dependencies and a test script, then only the test runs", () => {
    expect(planChecks({ scripts: { test: "node --test" } }, noLocks, {})).toEqual([
      { name: "test", command: "npm run test" },
    ]);
  });
  it("given dependencies and a pnpm lock, then install uses pnpm and scripts run through pnpm", () => {
    const checks = planChecks(
      { dependencies: { zod: "4" }, scripts: { build: "tsc", typecheck: "tsc --noEmit", test: "vitest" } },
      { ...noLocks, pnpm: true },
      {},
    );
    expect(checks.map((c) => c.command)).toEqual([
      "pnpm install --frozen-lockfile",
      "pnpm run build",
      "pnpm run typecheck",
      "pnpm run test",
    ]);
  });
  it("given npm's placeholder test script, then there is no test check", () => {
    expect(
      planChecks({ scripts: { test: 'echo "Error: no test specified" && exit 1' } }, noLocks, {}),
    ).toEqual([]);
  });
  it("given overrides, then they replace detection and an empty one disables the check", () => {
    const checks = planChecks({ scripts: { test: "node --test", build: "x" } }, noLocks, {
      test: "make test",
      build: "",
    });
    expect(checks).toEqual([{ name: "test", command: "make test" }]);
  });
  it("given no package.json, then only overrides run", () => {
    expect(planChecks(undefined, noLocks, { test: "cargo test" })).toEqual([
      { name: "test", command: "cargo test" },
    ]);
  });
});
