/**
 * Ties a service process to the supervisor that started it with an IPC channel (the CLI's embedded cluster
 * spawns every service with `stdio: [..., "ipc"]`). The channel is a pipe the kernel closes when the supervisor
 * exits for any reason, SIGKILL included, so its `disconnect` is the parent-death event Node offers without
 * `prctl`. On it this process raises SIGTERM on itself (the ordinary graceful stop runs) and exits with code 1
 * if it is still alive `graceMs` later. Without a channel (compose, systemd, a shell) nothing happens.
 */
export function watchSupervisor(graceMs = 10_000): void {
  if (!process.send) return;
  process.once("disconnect", () => {
    setTimeout(() => process.exit(1), graceMs).unref();
    process.kill(process.pid, "SIGTERM");
  });
}

/** Message a supervised service sends once it serves (consumers attached, or the gateway listening). */
export interface ReadyMessage {
  type: "ready";
  service: string;
}

/** Tells the supervisor (when there is one) that this service is ready. */
export function notifyReady(service: string): void {
  const msg: ReadyMessage = { type: "ready", service };
  process.send?.(msg);
}
