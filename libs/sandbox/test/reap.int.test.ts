import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "@longshot/testkit";
import { afterEach, describe, expect, it } from "vitest";
import { reapOrphanSandboxes } from "../src/index.ts";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

let dirs: Awaited<ReturnType<typeof tempDir>>[] = [];
afterEach(async () => {
  for (const d of dirs) await d.cleanup();
  dirs = [];
});

describe("reapOrphanSandboxes", () => {
  it("given a sandbox left running by a crashed provider, then its process group is killed and its directory removed", async () => {
    const root = await tempDir();
    dirs.push(root);
    const registry = join(root.path, "registry");
    const sandboxDir = join(root.path, "longshot-sandbox-t1-abc");
    await mkdir(registry, { recursive: true });
    await mkdir(sandboxDir);
    // A detached worker stand-in with a child of its own (same process group).
    const orphan = spawn("sh", ["-c", "sleep 60 & wait"], { detached: true, stdio: "ignore" });
    const exited = new Promise<NodeJS.Signals | null>((r) =>
      orphan.once("exit", (_code, signal) => r(signal)),
    );
    await writeFile(
      join(registry, "longshot-sandbox-t1-abc.json"),
      JSON.stringify({ pgid: orphan.pid, dir: sandboxDir }),
    );
    expect(alive(orphan.pid!)).toBe(true);

    expect(await reapOrphanSandboxes(registry)).toBe(1);

    expect(await exited).toBe("SIGKILL");
    expect(existsSync(sandboxDir)).toBe(false);
    expect(await readdir(registry)).toEqual([]);
  });

  it("given no registry, then nothing is reaped", async () => {
    const root = await tempDir();
    dirs.push(root);
    expect(await reapOrphanSandboxes(join(root.path, "missing"))).toBe(0);
  });
});
