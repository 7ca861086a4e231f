import { join } from "node:path";
import { instanceStateDir, type LongshotEnv } from "@longshot/config";
import { createMirrors, gitTokenEnv } from "@longshot/git";
import type { Logger } from "@longshot/log";
import type { SandboxBackend } from "./backend.ts";
import { IsolationUnavailableError, probeIsolation } from "./box.ts";
import { createLocalBackend } from "./local.ts";
import { createSandboxProvider, type SandboxProvider } from "./provider.ts";

/**
 * Thrown when the configured sandbox provider cannot run here (e.g. `local` without a working bubblewrap).
 * The message says what to install or set.
 */
export class SandboxProviderError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SandboxProviderError";
  }
}

/**
 * The sandbox backend `SANDBOX_PROVIDER` selects, for service `role` (its state lives under
 * `<LONGSHOT_STATE_DIR>/<role>/`): `local` needs a working bubblewrap (checked now), `unsafe-local` runs
 * plain processes, `modal` connects to Modal (`MODAL_TOKEN_ID`/`MODAL_TOKEN_SECRET`, `MODAL_SERVER_URL`).
 * @throws SandboxProviderError when the provider cannot work here, saying what to install or set.
 */
export async function sandboxBackendFromConfig(
  config: LongshotEnv,
  role: string,
  log: Logger,
): Promise<SandboxBackend> {
  const dir = join(instanceStateDir(config), role);
  if (config.SANDBOX_PROVIDER === "modal") {
    const { createModalBackend } = await import("./modal.ts");
    return createModalBackend({
      appName: config.MODAL_APP,
      image: config.SANDBOX_IMAGE,
      owner: role,
      log,
    });
  }
  if (config.SANDBOX_PROVIDER === "local") {
    const probe = await probeIsolation();
    if (!probe.bwrap) {
      throw new SandboxProviderError(
        `SANDBOX_PROVIDER=local isolates every agent with bubblewrap, which cannot run here: ${probe.bwrapProblem}. ` +
          "Install it (scripts/bootstrap.sh does), or set SANDBOX_PROVIDER=unsafe-local to run agents " +
          "WITHOUT isolation (they can read your files, keys and the cluster's traffic).",
        { cause: new IsolationUnavailableError(probe.bwrapProblem ?? "") },
      );
    }
    log.info({ cgroup: probe.cgroup, root: probe.root }, "sandboxes isolated by bubblewrap");
  } else {
    log.warn(
      "SANDBOX_PROVIDER=unsafe-local: agents run WITHOUT isolation, with this machine's files, processes and network",
    );
  }
  return createLocalBackend({
    isolation: config.SANDBOX_PROVIDER === "local" ? "bwrap" : "unsafe",
    registryDir: join(dir, "sandboxes"),
    log,
  });
}

/**
 * The {@link SandboxProvider} the configuration selects, with its mirrors under
 * `<LONGSHOT_STATE_DIR>/<role>/mirrors` (credentials from `GIT_TOKEN`), limits from `SANDBOX_MEMORY_MB`,
 * `SANDBOX_CPU_CORES` and `SANDBOX_PIDS_MAX`, and the harness from `WORKER_HARNESS` / `WORKER_COMMAND`.
 * @throws SandboxProviderError (see {@link sandboxBackendFromConfig}).
 */
export async function sandboxProviderFromConfig(
  config: LongshotEnv,
  role: string,
  log: Logger,
): Promise<SandboxProvider> {
  const backend = await sandboxBackendFromConfig(config, role, log);
  return createSandboxProvider({
    backend,
    mirrors: createMirrors(join(instanceStateDir(config), role, "mirrors"), gitTokenEnv(config.GIT_TOKEN)),
    log,
    limits: {
      memoryMb: config.SANDBOX_MEMORY_MB,
      cpuCores: config.SANDBOX_CPU_CORES,
      pidsMax: config.SANDBOX_PIDS_MAX,
    },
    harness: config.WORKER_HARNESS,
    ...(config.WORKER_COMMAND !== undefined ? { workerCommand: config.WORKER_COMMAND } : {}),
    maxBundleBytes: config.SANDBOX_MAX_BUNDLE_BYTES,
  });
}
