/** A rate limit on one attempt's progress events that never loses the latest one; see {@link createThrottle}. */
export interface Throttle<T> {
  /** Offers `item`: sent now when the interval since the last send has passed, else kept as the pending one. */
  push(item: T): void;
  /** Drops the pending item and its timer (the attempt ended: its `task.finished` says the rest). */
  cancel(): void;
}

/**
 * At most one `send` per `intervalMs` (leading edge), and the last item offered inside an interval is sent when
 * it ends (trailing edge), so a burst of tool calls is coalesced but the latest activity always goes out: the
 * monitor measures a task's idle time from its last `task.progress`, and a dropped last line would make a busy
 * agent look idle since its previous one.
 */
export function createThrottle<T>(intervalMs: number, send: (item: T) => void): Throttle<T> {
  let last = Number.NEGATIVE_INFINITY;
  let pending: { item: T } | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    if (!pending) return;
    const { item } = pending;
    pending = undefined;
    last = Date.now();
    send(item);
  };
  return {
    push(item) {
      const wait = last + intervalMs - Date.now();
      if (wait <= 0 && timer === undefined) {
        last = Date.now();
        send(item);
        return;
      }
      pending = { item };
      timer ??= setTimeout(flush, Math.max(0, wait));
    },
    cancel() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      pending = undefined;
    },
  };
}
