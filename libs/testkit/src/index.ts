import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { startNatsServer } from "@longshot/bus";

const run = promisify(execFile);

/** A NATS server for one test file: `url` to connect to, `stop()` in `afterAll`. */
export interface TestNats {
  url: string;
  kind: "container" | "process";
  stop(): Promise<void>;
}

/** True when a Docker engine answers (testcontainers' runtime probe, bounded to 5 s). */
export async function dockerAvailable(): Promise<boolean> {
  if (process.env.LONGSHOT_TEST_NO_DOCKER === "1") return false;
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    return await Promise.race([
      getContainerRuntimeClient().then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
    ]);
  } catch {
    return false;
  }
}

/**
 * Starts a JetStream-enabled NATS server for a test file: a testcontainers `nats` container when a Docker
 * engine is available, otherwise a locally spawned `nats-server` on a random port with a temp store.
 */
export async function startTestNats(): Promise<TestNats> {
  if (await dockerAvailable()) {
    const { NatsContainer } = await import("@testcontainers/nats");
    const c = await new NatsContainer(process.env.LONGSHOT_TEST_NATS_IMAGE ?? "nats:2.11")
      .withJetStream()
      .start();
    const o = c.getConnectionOptions() as { servers: string; user: string; pass: string };
    return {
      url: `nats://${o.user}:${o.pass}@${o.servers}`,
      kind: "container",
      stop: async () => void (await c.stop()),
    };
  }
  const s = await startNatsServer();
  return { url: s.url, kind: "process", stop: s.stop };
}

/** A temp directory removed by `cleanup()`. */
export async function tempDir(
  prefix = "longshot-test-",
): Promise<{ path: string; cleanup(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Runs git in `cwd` with a fixed test identity; returns trimmed stdout. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run("git", ["-c", "user.name=Test", "-c", "user.email=test@localhost", ...args], {
    cwd,
  });
  return stdout.trim();
}

/**
 * Creates a non-bare git repository at `dir` on branch `main` with `files` committed, configured with
 * `receive.denyCurrentBranch=updateInstead` so clones can push `main` into it. Returns the head sha.
 */
export async function makeRepo(dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  await git(dir, "init", "-q", "-b", "main");
  await git(dir, "config", "receive.denyCurrentBranch", "updateInstead");
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  await git(dir, "add", "-A");
  await git(dir, "commit", "-q", "-m", "initial");
  return git(dir, "rev-parse", "HEAD");
}

/**
 * Resolves when `predicate` returns truthy (polled every `intervalMs`), rejects after `timeoutMs`.
 * For conditions with no event to await (e.g. a file appearing); prefer awaiting events.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  timeoutMs = 30_000,
  intervalMs = 50,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
