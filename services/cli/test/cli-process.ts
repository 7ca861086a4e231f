import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const MAIN = join(import.meta.dirname, "../src/main.ts");

/** The CLI (`services/cli/src/main.ts`) running as its own process, its output collected. */
export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout line matching `re` (rejects when the CLI exits first or after `ms`). */
  line(re: RegExp, ms?: number): Promise<string>;
  /** Resolves with the exit code (128 + n for signal n). */
  exited: Promise<number>;
}

/**
 * Starts `longshot <args>` in `cwd` with exactly `env` (plus PATH and HOME of this process): what a user's shell
 * would run, so `./.env` of `cwd` and `LONGSHOT_STATE_DIR` work as they do for a user.
 */
export function startCli(args: string[], opts: { cwd: string; env: Record<string, string> }): CliProcess {
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) {
      const line = out.split("\n").find((l) => w.re.test(l));
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? 128 + (signal === "SIGKILL" ? 9 : 15))),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    line: (re, ms = 120_000) =>
      new Promise<string>((resolve, reject) => {
        const found = out.split("\n").find((l) => re.test(l));
        if (found !== undefined) return resolve(found);
        const timer = setTimeout(
          () => reject(new Error(`no line ${re} within ${ms} ms:\n${out}\n${err}`)),
          ms,
        );
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`the CLI exited (${code}) before ${re}:\n${out}\n${err}`));
        });
      }),
  };
}

/** Runs `longshot <args>` to its end. */
export async function runCli(
  args: string[],
  opts: { cwd: string; env: Record<string, string> },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = startCli(args, opts);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** Every live descendant of `pid` (children, their children …), from /proc. */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (rest[0] === "Z") continue;
      parent.set(Number(e), Number(rest[1]));
    } catch {
      // gone while scanning
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

/** True while `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}
