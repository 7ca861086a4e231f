import { existsSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { setTimeout as sleepTimer } from "node:timers/promises";

/** Waits `ms` (≤ 0: not at all); false when `signal` aborted first (the client went away). */
export async function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (ms <= 0) return !signal.aborted;
  try {
    await sleepTimer(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** Polls every 50 ms until `path` exists; false when `signal` aborts first. */
export async function waitForFile(path: string, signal: AbortSignal): Promise<boolean> {
  while (!existsSync(path)) if (!(await sleep(50, signal))) return false;
  return !signal.aborted;
}

/** Writes `data`, waiting for `drain` under backpressure (or `close` when the client disconnects). */
export async function write(res: ServerResponse, data: string): Promise<void> {
  if (!res.write(data)) {
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });
  }
}
