import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SweepCheck } from "@longshot/contracts";
import { cloneRepo, findConflictMarkers, headSha, remoteBranchHead } from "@longshot/git";
import { type CheckOverrides, type PlannedCheck, planChecks } from "../domain/checks.ts";

/** Result of one sweep of a base branch. */
export interface SweepResult {
  sha: string;
  green: boolean;
  checks: SweepCheck[];
  conflictFiles: string[];
  durationMs: number;
}

const OUTPUT_TAIL = 4000;
const SECRET_ENV = /(KEY|TOKEN|SECRET|PASSWORD|PASS|CREDENTIAL)S?$|^NATS_/i;

/** The environment checks run with: the service's own, minus anything that looks like a secret or NATS access. */
export function checkEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!SECRET_ENV.test(k)) out[k] = v;
  // A check that runs node --test must not inherit a parent test runner's context (it would run nothing).
  delete out.NODE_TEST_CONTEXT;
  out.CI = "true";
  return out;
}

function runCheck(check: PlannedCheck, cwd: string, timeoutMs: number): Promise<SweepCheck> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", check.command], {
      cwd,
      env: checkEnv(),
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const onData = (d: Buffer) => {
      out = (out + d.toString()).slice(-OUTPUT_TAIL * 4);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      const output = (timedOut ? `${out}\n[timed out after ${timeoutMs} ms]` : out).slice(-OUTPUT_TAIL);
      resolve({
        name: check.name,
        command: check.command,
        ok: code === 0 && !timedOut,
        exitCode: code,
        output,
        durationMs: Date.now() - started,
      });
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({
        name: check.name,
        command: check.command,
        ok: false,
        exitCode: null,
        output: String(err),
        durationMs: Date.now() - started,
      });
    });
  });
}

/**
 * Sweeps `baseBranch` of `repo` in a fresh scratch clone (never the target's own working tree, never the
 * merger's clone): install dependencies if the target has any, build, typecheck, tests (commands from
 * `overrides` or detected from package.json; a failing install skips the rest), and conflict markers in any
 * tracked text file. Green when every check passed and no markers were found. The clone is always removed.
 * @throws GitError when the repository or branch cannot be cloned (retryable for the caller).
 */
export async function sweep(
  repo: string,
  baseBranch: string,
  overrides: CheckOverrides,
  timeoutMs: number,
): Promise<SweepResult> {
  const started = Date.now();
  const root = await mkdtemp(join(tmpdir(), "longshot-sweep-"));
  try {
    const dir = join(root, "repo");
    await cloneRepo(repo, dir, { branch: baseBranch });
    const sha = await headSha(dir);
    const pkgPath = join(dir, "package.json");
    const pkg = existsSync(pkgPath) ? (JSON.parse(await readFile(pkgPath, "utf8")) as unknown) : undefined;
    const lockfiles = {
      pnpm: existsSync(join(dir, "pnpm-lock.yaml")),
      yarn: existsSync(join(dir, "yarn.lock")),
      npm: existsSync(join(dir, "package-lock.json")),
    };
    const checks: SweepCheck[] = [];
    for (const planned of planChecks(pkg, lockfiles, overrides)) {
      const result = await runCheck(planned, dir, timeoutMs);
      checks.push(result);
      if (planned.name === "install" && !result.ok) break;
    }
    const markerStarted = Date.now();
    const conflictFiles = await findConflictMarkers(dir);
    checks.push({
      name: "conflict-markers",
      command: "git grep -I conflict markers",
      ok: conflictFiles.length === 0,
      exitCode: conflictFiles.length === 0 ? 0 : 1,
      output: conflictFiles.join("\n"),
      durationMs: Date.now() - markerStarted,
    });
    return { sha, green: checks.every((c) => c.ok), checks, conflictFiles, durationMs: Date.now() - started };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The current head of `baseBranch` in `repo`, or undefined when it cannot be read (stale-result check). */
export async function remoteHead(repo: string, baseBranch: string): Promise<string | undefined> {
  const r = await remoteBranchHead(repo, baseBranch);
  return r.ok ? r.sha : undefined;
}
