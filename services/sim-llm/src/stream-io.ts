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
