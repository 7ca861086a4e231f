/**
 * Sandbox start benchmark (`pnpm bench sandbox`): what isolation adds to starting a worker.
 *
 * Measures, interleaved round by round so machine noise hits every variant alike, the time from asking for a
 * process to its first stdout line:
 *   spawn    — a plain `child_process.spawn` (no isolation: the unsafe-local path);
 *   exec     — an exec in an existing bubblewrap box (every namespace unshared, cgroup joined, uid dropped);
 *   box+exec — a new box (directory, cgroup with limits) and its first exec: what one task attempt pays.
 * Each process is `node -e` printing one protocol line, i.e. the worker's start without its own work.
 * Prints p50 and p95 per variant and the added time (isolated minus plain, per round, then p50/p95), and the
 * verdict against the goal: ≤ 50 ms added at p50. BENCH_SANDBOX_ROUNDS (default 40).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createBox, probeIsolation } from "../src/index.ts";

const ROUNDS = Number(process.env.BENCH_SANDBOX_ROUNDS) > 0 ? Number(process.env.BENCH_SANDBOX_ROUNDS) : 40;
const LINE = 'console.log(JSON.stringify({ kind: "progress", message: "worker started" }))';
const GOAL_MS = 50;

/** ms from `start` until `child` prints its first stdout line; rejects if it exits first. */
function firstLine(child: ChildProcess, start: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once("line", () => {
      resolve(performance.now() - start);
      rl.close();
    });
    child.once("exit", (code) => reject(new Error(`exited with ${code} before its first line`)));
    child.stderr?.resume();
  });
}

const exited = (c: ChildProcess) =>
  new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once("exit", () => r())));

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

async function main(): Promise<void> {
  const probe = await probeIsolation();
  if (!probe.bwrap) throw new Error(`bubblewrap is not usable here: ${probe.bwrapProblem}`);
  console.log(
    `sandbox start: ${ROUNDS} rounds, cgroup ${probe.cgroup}, ${probe.root ? "root (uid dropped per box)" : "unprivileged"}`,
  );
  const root = await mkdtemp(join(tmpdir(), "longshot-bench-sandbox-"));
  await chmod(root, 0o711);
  const limits = { memoryMb: 1024, pidsMax: 256, cpuCores: 1 };
  const shared = await createBox({
    id: "bench-shared",
    dir: join(root, "shared"),
    mounts: [],
    limits,
    isolation: "bwrap",
  });
  const times: Record<"spawn" | "exec" | "box+exec", number[]> = { spawn: [], exec: [], "box+exec": [] };
  try {
    // Warm-up: page cache, the node binary, bwrap.
    for (let i = 0; i < 3; i++) {
      const c = shared.exec({ argv: [process.execPath, "-e", LINE], cwd: "/", env: {} });
      await firstLine(c, performance.now());
      await exited(c);
    }
    for (let round = 0; round < ROUNDS; round++) {
      let t = performance.now();
      const plain = spawn(process.execPath, ["-e", LINE], { stdio: ["ignore", "pipe", "pipe"], env: {} });
      times.spawn.push(await firstLine(plain, t));
      await exited(plain);

      t = performance.now();
      const inBox = shared.exec({ argv: [process.execPath, "-e", LINE], cwd: "/", env: {} });
      times.exec.push(await firstLine(inBox, t));
      await exited(inBox);

      t = performance.now();
      const dir = join(root, `r${round}`);
      await mkdir(dir);
      const box = await createBox({
        id: `bench-${round}`,
        dir: join(dir, "box"),
        mounts: [],
        limits,
        isolation: "bwrap",
      });
      const first = box.exec({ argv: [process.execPath, "-e", LINE], cwd: "/", env: {} });
      times["box+exec"].push(await firstLine(first, t));
      await exited(first);
      await box.destroy();
    }
  } finally {
    await shared.destroy();
    await rm(root, { recursive: true, force: true });
  }
  console.log("\nfirst protocol line after the start request (node -e, one line):");
  for (const [name, xs] of Object.entries(times)) {
    console.log(
      `  ${name.padEnd(9)} p50 ${fmt(pct(xs, 50)).padStart(9)}   p95 ${fmt(pct(xs, 95)).padStart(9)}`,
    );
  }
  const added = (k: "exec" | "box+exec") => times[k].map((v, i) => v - (times.spawn[i] ?? 0));
  console.log("\nadded by isolation (per round, isolated minus plain spawn):");
  for (const k of ["exec", "box+exec"] as const) {
    const a = added(k);
    console.log(`  ${k.padEnd(9)} p50 ${fmt(pct(a, 50)).padStart(9)}   p95 ${fmt(pct(a, 95)).padStart(9)}`);
  }
  const p50 = pct(added("box+exec"), 50);
  console.log(
    `\ngoal: ≤ ${GOAL_MS} ms added at p50 for a new sandbox (box+exec): ${fmt(p50)} → ${p50 <= GOAL_MS ? "met" : "NOT met"}`,
  );
}

await main();
